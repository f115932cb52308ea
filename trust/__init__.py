"""Votes a model team can trust: voter risk scores, a proof of work for new sessions and a prompt moderation hook.

Layering: ``trust.pow`` and ``trust.moderation`` (with ``trust.gate``) are leaves that ``arena.services`` calls
before a battle starts; they import nothing of ``arena``. ``trust.risk`` reads the arena's tables and is called
by ``leaderboard.snapshots``. So the flow stays one way: leaderboard -> trust.risk -> arena -> trust.gate.
"""
