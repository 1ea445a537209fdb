"""Ray actors: thin shells that own sockets and threads and call risk/ and fix/.
(Built by the daemon issue.)"""
