"""The job contract shared by the API and the worker: settings, job records,
storage keys and client, queue, error codes and result schemas.

Nothing in here imports cv2, torch or other heavy packages.
"""

__version__ = "0.1.0"
