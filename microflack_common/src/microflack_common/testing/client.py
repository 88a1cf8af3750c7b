"""A JSON test client for a service's app, and tokens signed with its key."""
import base64
import json

from ..tokens import generate_token


def basic_auth_header(nickname, password):
    credentials = f'{nickname}:{password}'.encode()
    return 'Basic ' + base64.b64encode(credentials).decode()


def make_token(app, user_id, expires_in=3600):
    return generate_token(user_id, app.config['JWT_SECRET_KEY'], expires_in)


class ApiResponse:
    """A test response with ``status``, ``json`` and ``headers``."""

    def __init__(self, response):
        self.response = response
        self.status = response.status_code
        self.headers = response.headers
        self.data = response.get_data()
        try:
            self.json = json.loads(self.data) if self.data else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return f'<ApiResponse {self.status} {self.data[:200]!r}>'


class ApiClient:
    """Sends JSON requests to an app: ``client.post(url, body, token=...)``.

    ``token`` adds a Bearer header, ``basic=(nickname, password)`` a Basic
    one, ``headers`` anything else; ``raw`` sends a body as it is.
    """

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()

    def request(self, method, url, body=None, token=None, basic=None,
                headers=None, raw=None, content_type='application/json'):
        headers = dict(headers or {})
        if token is not None:
            headers['Authorization'] = f'Bearer {token}'
        if basic is not None:
            headers['Authorization'] = basic_auth_header(*basic)
        data = raw if raw is not None else (
            json.dumps(body) if body is not None else None)
        response = self.client.open(url, method=method, data=data,
                                    headers=headers,
                                    content_type=content_type)
        return ApiResponse(response)

    def get(self, url, **kwargs):
        return self.request('GET', url, **kwargs)

    def get_json(self, url, **kwargs):
        """The JSON of a GET that must answer 200."""
        rv = self.get(url, **kwargs)
        assert rv.status == 200, rv
        return rv.json

    def post(self, url, body=None, **kwargs):
        return self.request('POST', url, body, **kwargs)

    def put(self, url, body=None, **kwargs):
        return self.request('PUT', url, body, **kwargs)

    def delete(self, url, **kwargs):
        return self.request('DELETE', url, **kwargs)
