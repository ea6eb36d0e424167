"""Execution backends behind one small interface (`base.Scheduler`)."""
