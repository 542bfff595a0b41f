"""What ``pidproc-patch.pth`` runs at interpreter start-up when
``PIDPROC_PATCH`` is set (to anything but "" or "0").

The build turns this file into the one line of that .pth file, installed at
the top of site-packages (setup.py); the line tests the variable before
anything else, so that without it nothing here runs and nothing is imported.

site reads .pth files while it is still building ``sys.path``, one site
directory after the other, so pidproc's own dependency may not be importable
yet (cffi from the system's packages in a ``--system-site-packages`` venv, or
pidproc in the user site and cffi in the system's).  The patch is therefore
applied once ``sys.path`` is complete: when site imports ``sitecustomize``,
which it does right after the last site directory, whether or not there is
one to find.  A failure is reported on stderr and the program runs unpatched.
"""

from __future__ import annotations

import sys


class _PatchBeforeSitecustomize:
    """A meta path finder that finds nothing: it patches, once, when asked
    for ``sitecustomize``, then leaves the import to the usual finders."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name != "sitecustomize":
            return None
        sys.meta_path.remove(_PatchBeforeSitecustomize)
        try:
            import pidproc

            pidproc.patch()
        except Exception as e:  # the program still runs, as without the variable
            sys.stderr.write(
                f"pidproc-patch.pth: PIDPROC_PATCH is set, but pidproc could not"
                f" patch subprocess: {type(e).__name__}: {e}\n"
            )
        return None


sys.meta_path.insert(0, _PatchBeforeSitecustomize)
