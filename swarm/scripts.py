"""Lua shared by the Redis scripts of the bus, the task store and accounting.

``PUBLISH`` is the bus's one way to send a message: XADD it unless its message id was sent to
that stream before (a ``SET NX`` on its dedupe key, which shares the stream's slot). A script
that sends messages defines it first and calls ``publish(...)``.
"""

from __future__ import annotations

PUBLISH = """
local function publish(stream, seen, payload, maxlen, ttl)
  if not redis.call('SET', seen, '1', 'NX', 'EX', ttl) then return false end
  if maxlen == '0' then return redis.call('XADD', stream, '*', 'm', payload) end
  return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'm', payload)
end
"""
"""``publish(stream, dedupe key, payload, maxlen, dedupe ttl)``: the entry id, or false if
the message was sent before. A maxlen of ``'0'`` means no trimming at publish."""
