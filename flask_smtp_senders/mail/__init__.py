"""What a message becomes before it is sent: the sender's headers and the bytes on the wire."""
