"""The retry life cycle: when a failed integration is retried, how an attempt is made, and what
its outcome does to the record (`policies`: the schedule; `states`: the derived state;
`transitions`: supersede and updates; the worker in `dispatch` makes the attempts).

Life cycle (README, "The retry life cycle"):

* A record is *scheduled* (`next_retry_at`) when it is active, not parked, not exhausted, and
  its reason's policy retries automatically; the time is the last attempt (or creation) plus
  `retry_interval` seconds, stretched by exponential backoff and jitter when the policy says so.
* A worker *claims* scheduled records whose time has come, with retries left (or a retry asked
  for by hand: `retry_by_hand`), on channels with a retry endpoint, under a lease; it POSTs
  each to the channel app, signed. A 2xx *resolves* the record; anything
  else counts an attempt, keeps the error and schedules the next one, until `retry_count`
  reaches `max_retry_count`: *exhausted*, with an event sent once.
* A newer failure of the same object *supersedes* older active ones; records past their
  expiration date are *expired*; inactive records past the retention are purged.
"""
