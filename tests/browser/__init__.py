"""Real-browser tests of Settings > Senders in the example portal, driven in Chromium."""
