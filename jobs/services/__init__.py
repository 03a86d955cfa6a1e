"""The use cases, one module per capability; callers import the one they use.

- ``press``: a press of an action on a job, audited (``finish()`` is the one writer of outcomes);
- ``actions``: the table of job actions (run, stop) and how each is sent to IPS;
- ``status`` and ``follow``: what IPS says of a run, and following it to its result;
- ``activity``: what IPS is running in a company, and a run's log details;
- ``sync``: the job catalogue from getScheduledJobs;
- ``connections``: testing a connection, and its service account's companies;
- ``people``: memberships, sign-in with IPS, and each user's settings;
- ``chores``: recurring background chores;
- ``exports``: the record of history exports.

Views, admin actions, tasks and management commands call these and hold no
business logic themselves. Background work is scheduled through jobs/events.py.
"""
