"""SESSION_ENGINE: Django's database sessions, a sign-in's session written once.

At login Django gives the session a new key (against session fixation) by
creating its row at once, axes creates it if it has no key yet (to log a hash
of the key), and the response saves it again: two writes, up to two commits,
on every sign-in. Here a session that has no key yet, never sent to anyone so
held by nobody, gets its key when it is first saved; and a save that would
write what this request already wrote (same key, same data) is skipped. A
session that has a key is cycled as Django does."""

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore


class SessionStore(DatabaseSessionStore):
    #: (key, data as stored) of this request's last write of the session.
    _written = None

    def cycle_key(self):
        if self.session_key is None:
            return  # a fresh key when first saved (login() has modified it: it will be)
        super().cycle_key()

    def save(self, must_create=False):
        if not must_create and self.session_key is not None and self._written == self._state():
            return  # this request wrote it as it is
        super().save(must_create)
        if self.session_key is not None:
            self._written = self._state()

    def _state(self):
        return self.session_key, self.serializer().dumps(self._session)
