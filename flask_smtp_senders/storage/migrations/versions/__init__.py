"""The revisions of the ``smtp_senders`` table (branch label ``smtp_senders``)."""
