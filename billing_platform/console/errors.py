"""The console's own errors, in the platform's one hierarchy (`billing_platform.core.errors`).

NotFound (404): InvitationInvalid, MemberNotFound
Conflict (409): AlreadyMember, SubmissionInProgress, LastOwner
"""

from __future__ import annotations

from billing_platform.core.errors import Conflict, NotFound


class InvitationInvalid(NotFound):
    code = "invitation_invalid"
    title = "This invitation link is not valid: it was used, it expired, or it never existed"


class AlreadyMember(Conflict):
    code = "already_member"
    title = "This person is already a member of the team"


class SubmissionInProgress(Conflict):
    code = "submission_in_progress"
    title = "This form is still being processed; reload the page in a moment"


class MemberNotFound(NotFound):
    code = "member_not_found"
    title = "No member or pending invitation of this team has this id"


class LastOwner(Conflict):
    code = "last_owner"
    title = "A team keeps at least one owner: make someone else an owner first"
