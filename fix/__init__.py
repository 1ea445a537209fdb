"""FIX 4.4 engine: framer and parser, session layer, message store, drop-copy
application and order-entry client. Knows nothing of margin; imports nothing of ours.
(Built by the FIX engine issue.)"""
