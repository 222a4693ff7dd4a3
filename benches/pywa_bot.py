"""The peer of `cargo bench --bench pipeline`: a WhatsApp bot on pywa (pywa_async 4.5, FastAPI,
uvicorn with uvloop) that answers "hi" with three buttons, inside the webhook request, with no
durable queue, as pywa's documentation shows. The benchmark installs it into a virtualenv of
its own and runs it against the same signed payloads and the same mock Graph API as our server.

    python pywa_bot.py PORT PHONE_ID APP_SECRET GRAPH_BASE_URL

Prints "pywa ready" once it listens.
"""

import contextlib
import sys

import httpx
import uvicorn
from fastapi import FastAPI
from pywa_async import WhatsApp, filters, types
from pywa.utils import UserIdentifier

port, phone_id, app_secret, graph = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]



@contextlib.asynccontextmanager
async def lifespan(_: FastAPI):
    print("pywa ready", flush=True)
    yield


app = FastAPI(lifespan=lifespan)
# One connection pool to the mock Graph API, as a production bot would keep to Meta's.
session = httpx.AsyncClient(
    limits=httpx.Limits(max_connections=256, max_keepalive_connections=256), timeout=30
)
wa = WhatsApp(
    phone_id=phone_id,
    token="bench-token",
    session=session,
    server=app,
    webhook_endpoint="/webhook",
    verify_token="bench-verify",
    app_secret=app_secret,
    webhook_challenge_delay=0,
    # Answer the phone number (the mock records recipients), not the business-scoped id.
    user_identifier_priority=(
        UserIdentifier.WA_ID,
        UserIdentifier.BSUID,
        UserIdentifier.PARENT_BSUID,
    ),
)
# The Graph API's address: pywa builds it from the version; the mock serves `/{id}/messages`.
wa.api._session.base_url = graph


@wa.on_message(filters.text)
async def hi(_: WhatsApp, msg: types.Message):
    await msg.reply_text(
        "Welcome! What would you like to see?",
        buttons=[
            types.Button(title="Results", callback_data="results"),
            types.Button(title="Attendance", callback_data="attendance"),
            types.Button(title="Notices", callback_data="notices"),
        ],
    )


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(port), loop="uvloop", log_level="warning")
