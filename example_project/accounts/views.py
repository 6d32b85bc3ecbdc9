from django.db import transaction
from django.shortcuts import redirect, render

from accounts.forms import SignupForm
from accounts.jobs import EmailSenderJob


def signup(request):
    """GET: the form.  POST: create the user and enqueue the welcome email."""
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            with transaction.atomic():
                user = form.save()
                # Pushed to Redis when the transaction commits, so the worker
                # never looks for a user that is not in the database yet.
                job = EmailSenderJob.perform_later(user.id, "welcome")
            request.session["signup"] = {"username": user.username, "email": user.email, "jid": job.jid}
            return redirect("signup-done")
    else:
        form = SignupForm()
    return render(request, "accounts/signup.html", {"form": form})


def signup_done(request):
    """Show which job was enqueued for the sign-up that just happened."""
    return render(request, "accounts/signup_done.html", {"signup": request.session.get("signup")})
