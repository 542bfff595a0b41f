"""How a child is born: the spawn paths and the one request they all take.

``paths``     one record per spawn path: what it is, what it can express
``state``     what is known about each path here; knobs; the chain to try
``convert``   Popen's arguments by the stdlib's rules, with its exceptions
``request``   the request in Python terms, and the C struct filled from it
``dispatch``  one spawn through the chain's C paths

The C functions the records name are in ``../_c/``; the contract each must
keep is in ``docs/design.md``.
"""
