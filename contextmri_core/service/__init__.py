"""The application: live session and engine, stream server, offline replay, series building."""
