"""Every error a service returns is JSON: ``{"error": "..."}``."""
import logging

from flask import jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

logger = logging.getLogger(__name__)


def http_error(error):
    # abort(400, 'why') carries its own text; werkzeug's stock texts are
    # long sentences, so those answer with the short name ("not found").
    described = error.description and \
        error.description != type(error).description
    response = jsonify(error=error.description if described
                       else error.name.lower())
    response.status_code = error.code
    for name, value in error.get_headers():
        if name.lower() not in ('content-type', 'content-length'):
            response.headers[name] = value
    return response


def unexpected_error(error):
    logger.exception('unhandled error')
    return http_error(InternalServerError('internal server error'))


def register_error_handlers(app):
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
