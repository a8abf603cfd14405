"""Private torch APIs, one module per area, each naming the torch versions it was checked on.

Code elsewhere in aotgraph reaches torch's private APIs only through these modules (Inductor's
live in `compilers/torchinductor.py`), so a torch upgrade that breaks one is found in one place.
"""
