"""The dashboard: users register, log in, upload images and watch their workflows."""
