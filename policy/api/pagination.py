# Its own module: DRF imports the default pagination class while loading its generic views.
from rest_framework import pagination


class Pagination(pagination.PageNumberPagination):
    """100 rows a page; `page_size` asks for up to 1,000."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
