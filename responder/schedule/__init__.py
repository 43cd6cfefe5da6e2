"""Schedules: when they fire (`timing`: durations, cron and `every`, slots in a zone) and the task
that fires each slot once (`runner`: missed slots, catch-up, reloads, the slot ledger).

What a schedule says and where it goes belongs to the rules compiler and the delivery pipeline;
leadership between replicas is the ledger's (responder.delivery.claims), so a shared store
elects one firer per slot without this package changing.
"""
