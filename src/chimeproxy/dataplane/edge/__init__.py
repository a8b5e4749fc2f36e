"""The SIP edge (`chimeproxy sip-edge`): Kamailio routing calls and messages to proxy numbers
through chimeproxy's routing service, rendered from a template and supervised.

- settings.py     the command's settings and the address types they are written in
- config.py       the Kamailio configuration rendered from kamailio.cfg.in
- kamailio.py     finding, checking and running the Kamailio binary
- supervisor.py   restarting a child process that dies, stopping it on request
- command.py      the command line
"""
