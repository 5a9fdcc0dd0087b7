from django.apps import AppConfig


class PolicyConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "policy"
    verbose_name = "relay policy"

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group

        # signals and throttle connect the login receivers.
        from policy import audit, models, revisions, signals, throttle  # noqa: F401

        for model in (
            models.RoutingRestrictions,
            models.TrustedNetwork,
            models.DeniedNetwork,
            models.InternalAddress,
            models.LocalDomain,
        ):
            audit.track(model)
            revisions.watch(model)
        audit.track(models.SmtpUser, secrets={"password_hash"})
        audit.track(models.SelfTestRun, exclude={"report"})
        revisions.watch(models.SmtpUser)
        audit.track(get_user_model(), exclude={"last_login"}, secrets={"password"}, m2m=("groups",))
        audit.track(Group)
        audit.track(models.ApiToken, secrets={"digest"}, exclude={"last_used_at"})
        audit.track(models.Blocklist)
        audit.track(models.WatchedAddress, exclude={"last_checked_at"})
