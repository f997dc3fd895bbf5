"""What an administrator and the host's code can do with senders: change them (audited),
probe them (Send Test Email, the connection check) and send through them."""
