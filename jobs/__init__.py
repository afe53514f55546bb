"""Jobs: the queue, the task registry and the workers."""
