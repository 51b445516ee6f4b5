"""From picks to located events: velocity models, association (PyOcto), location, magnitude."""
