"""The Content-Security-Policy header: our pages run only our own scripts and styles.

The project's templates have no inline script or style, so they get the strict policy.
Pages that come with libraries (the Django admin, DRF's browsable API, Swagger UI and
Redoc) carry inline style attributes and blocks, Swagger UI draws data: images and Redoc
starts a blob: worker; under their prefixes styles, images and workers are relaxed, but
scripts never are.
"""

from csp.constants import NONE, SELF, UNSAFE_INLINE
from csp.middleware import CSPMiddleware

POLICY = {
    "default-src": [SELF],
    "script-src": [SELF],
    "style-src": [SELF],
    "img-src": [SELF],
    "font-src": [SELF],
    "connect-src": [SELF],
    "object-src": [NONE],
    "base-uri": [NONE],
    "form-action": [SELF],
    "frame-ancestors": [NONE],
}
LIBRARY_PAGES = ("/admin/", "/api/")
LIBRARY_ALLOWANCES = {"style-src": [UNSAFE_INLINE], "img-src": ["data:"], "worker-src": [SELF, "blob:"]}


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        if request.path_info.startswith(LIBRARY_PAGES):
            parts.update = {**LIBRARY_ALLOWANCES, **(parts.update or {})}
        return parts
