"""The application: live session and engine, stream server (with the ``client_policy`` of
what a remote client may choose), offline replay (``interrupt``: SIGTERM/SIGINT unwind
cleanly), series building."""
