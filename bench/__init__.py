"""The benchmark suite: ours and stock python-socketio side by side on identical load.

``python -m bench`` runs it; see ``bench/RESULTS.md`` for what it measures and the latest full run.
"""
