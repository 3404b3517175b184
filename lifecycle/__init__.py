"""The pure lifecycle core of leadflow: stages, scoring, SLAs, business calendar, timers.

Nothing in this package performs I/O, touches Kafka or reads the clock: every function takes the
current time as an argument, so replay and live processing give the same answers.
"""
