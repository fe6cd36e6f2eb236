"""Page objects of the dashboard: locators from roles, labels and test ids; verdicts stay in tests."""

from pages.base import BasePage
from pages.components import Flash, NavBar
from pages.dashboard import DashboardPage, FileInput
from pages.login import LoginPage
from pages.register import RegisterPage
from pages.workflow import NotFoundPage, WorkflowPage

__all__ = [
    "BasePage",
    "DashboardPage",
    "FileInput",
    "Flash",
    "LoginPage",
    "NavBar",
    "NotFoundPage",
    "RegisterPage",
    "WorkflowPage",
]
