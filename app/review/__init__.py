"""The review loop: the queue of calls that need a person, human labels, production quality
measured on the audit sample, and the labels exported as data."""
