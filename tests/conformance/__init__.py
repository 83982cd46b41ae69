"""Django's own cache tests, re-pointed at this project's backends."""
