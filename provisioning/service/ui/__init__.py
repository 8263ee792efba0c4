"""The operator dashboard at /ui/: server-rendered pages, Server-Sent Events, BFF sign-in."""
