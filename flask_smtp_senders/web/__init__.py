"""The Senders pages' and the JSON API's parts: what they share (the guard, the flows of a
change and a probe, what a failure tells the user), the forms, the API's bodies and
problem documents, and the response headers."""
