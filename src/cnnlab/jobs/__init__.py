"""Jobs: a reproduction or a study, which trains many runs in one folder.

This layer owns a job folder's files, its plan and failure records (:mod:`.folder`), where it
stands (:mod:`.status`, ``cnnlab status``), its live lines (:mod:`.live`) and the running of
its tasks on an executor (:mod:`.run`).
"""

from cnnlab.jobs.folder import Planned, read_plan
from cnnlab.jobs.live import LiveStatus
from cnnlab.jobs.run import job_executor, run_job
from cnnlab.jobs.status import JobStatus, RunStatus, job_status, run_status

__all__ = [
    "JobStatus",
    "LiveStatus",
    "Planned",
    "RunStatus",
    "job_executor",
    "job_status",
    "read_plan",
    "run_job",
    "run_status",
]
