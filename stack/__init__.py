"""The local stack runner: emulators, revision router and service processes.

    python -m stack up [--detach] [--allow-missing] [--import-data METADATA]
    python -m stack status
    python -m stack down

Modules: processes (process groups, free ports, bounded readiness waits), emulators (Firestore,
Pub/Sub, Firebase Auth, Cloud Storage), router (Cloud Run-like traffic routing, own process),
infra (topics, push subscriptions, dead letters, bucket), state (.stack/stack.json), control
(StackControl: revisions, routes, drains, rules, export/import), runner (up/down/status).

Emulator facts checked here (Cloud SDK 528 emulators, firebase-tools 15.34.2):
- Pub/Sub emulator flags parse only as --host=H --port=P (with a space, the port is read as "").
- Firestore export at run time: POST /emulator/v1/projects/P:export
  {"database": "projects/P/databases/(default)", "export_directory": DIR} writes
  DIR/firestore_export_<n>/firestore_export_<n>.overall_export_metadata.
- Firestore import at run time exists: POST /emulator/v1/projects/P:import with the same body but
  export_directory = the .overall_export_metadata FILE (a directory is refused with "Failed to
  parse overall export metadata file"). It merges (exported documents overwritten, others kept),
  so StackControl.import_data clears first. At start, --seed_from_export FILE and
  --import-data FILE both load it.
- Rules at run time: PUT /emulator/v1/projects/P:securityRules
  {"rules": {"files": [{"name": "firestore.rules", "content": TEXT}]}}; a bad rules text -> 400.
"""
