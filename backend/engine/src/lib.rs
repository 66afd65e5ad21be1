//! The scheduler. (Trigger sources, run creation and DAG advancement arrive with the scheduling core.)
