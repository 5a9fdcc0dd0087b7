"""A declarative API test: a subclass names an endpoint and its data, the base class runs the checks.

Each check also asserts the audit row, since an API write that leaves no trace is a bug.
"""

from django.urls import reverse

from policy.models import AuditEntry


class APITestBase:
    basename: str  # the router's name for the endpoint, e.g. "trustednetwork"
    model: type
    create_data: dict  # a valid POST body
    created: dict = {}  # what the answer must hold besides create_data, e.g. normalised values
    update_data: dict  # a valid PATCH body
    updated: dict = {}
    write_only: tuple[str, ...] = ()  # fields that must never be returned

    def make(self):
        """Return an existing object for the get, update and delete checks."""
        raise NotImplementedError

    @property
    def list_url(self) -> str:
        return reverse(f"api:{self.basename}-list")

    def detail_url(self, obj) -> str:
        return reverse(f"api:{self.basename}-detail", args=[obj.pk])

    def expect(self, data: dict, extra: dict) -> dict:
        return {name: value for name, value in (data | extra).items() if name not in self.write_only}

    def assert_audited(self, action, obj):
        entry = AuditEntry.objects.filter(action=action, object_type=self.model._meta.verbose_name).first()
        assert entry is not None, f"no {action} entry"
        assert (entry.object_id, entry.source, entry.actor_name) == (str(obj.pk), "api", "erin (token rw)")
        return entry

    def test_list(self, api):
        obj = self.make()
        response = api.get(self.list_url)
        assert response.status_code == 200
        assert [row["id"] for row in response.json()["results"]] == [obj.pk]

    def test_get(self, api):
        obj = self.make()
        data = api.get(self.detail_url(obj)).json()
        assert data["id"] == obj.pk
        assert not set(self.write_only) & set(data)

    def test_create(self, api):
        response = api.post(self.list_url, self.create_data)
        assert response.status_code == 201, response.json()
        data = response.json()
        assert data | self.expect(self.create_data, self.created) == data
        assert not set(self.write_only) & set(data)
        obj = self.model.objects.get(pk=data["id"])
        assert obj.created_by.username == "erin"
        entry = self.assert_audited("create", obj)
        for name in self.write_only:
            assert self.create_data[name] not in str(entry.after)

    def test_update(self, api):
        obj = self.make()
        response = api.patch(self.detail_url(obj), self.update_data)
        assert response.status_code == 200, response.json()
        data = response.json()
        assert data | self.expect(self.update_data, self.updated) == data
        entry = self.assert_audited("update", obj)
        assert entry.before != entry.after

    def test_delete(self, api):
        obj = self.make()
        assert api.delete(self.detail_url(obj)).status_code == 204
        assert not self.model.objects.filter(pk=obj.pk).exists()
        assert self.assert_audited("delete", obj).after is None
