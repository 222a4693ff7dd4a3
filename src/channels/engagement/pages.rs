//! Demo pages that speak the engagement protocol from a browser, as a frontend would:
//! `/api/chatbot-demo/engagement/{report_id}/` and `/api/chatbot-demo/success/{report_id}/`.

use crate::error::ErrorCode;
use poem::http::StatusCode;
use poem::web::{Data, Html, Path};
use poem::{IntoResponse, Response, handler};
use secrecy::ExposeSecret;

use super::Site;
use super::params;
use super::script::check_slug;
use crate::error::json_error;

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
#log { border: 1px solid #ccc; border-radius: 8px; padding: 1rem; min-height: 12rem; margin: 1rem 0; }
.bot, .me, .err, .info { margin: .4rem 0; padding: .4rem .7rem; border-radius: 8px; max-width: 85%; }
.bot { background: #eef; } .me { background: #efe; margin-left: auto; text-align: right; }
.err { background: #fee; color: #900; } .info { color: #555; font-style: italic; }
label { margin-right: 1rem; } input[type=text] { width: 60%; }
"#;

/// A 404 for a path segment that cannot be a report id.
fn not_a_report() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such report id",
    )
}

fn page(title: &str, body: &str) -> Response {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>{STYLE}</style></head><body>{body}</body></html>"
    ))
    .into_response()
}

/// Shared script: the socket URL and how a line is shown (as text, never as HTML).
const COMMON_JS: &str = r#"
const log = document.getElementById('log');
function wsUrl(path) { return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path; }
function show(cls, text, link) {
  const div = document.createElement('div');
  div.className = cls;
  div.textContent = text;
  if (link) {
    div.appendChild(document.createElement('br'));
    const a = document.createElement('a');
    a.href = link; a.textContent = link; a.className = 'report-link';
    div.appendChild(a);
  }
  log.appendChild(div);
  return div;
}
"#;

/// `GET /api/chatbot-demo/engagement/{report_id}/`.
#[handler]
pub fn engagement_page(Path(id): Path<String>) -> Response {
    if check_slug(&id).is_err() {
        return not_a_report();
    }
    let body = format!(
        r#"<h1>Engagement chat: <code>{id}</code></h1>
<p>This page speaks <code>/ws/chat/{id}</code> as a shop's frontend would.</p>
<form id="start">
  <label>Language <select id="lang"><option>en</option><option>ru</option><option>pl</option></select></label>
  <label><input type="checkbox" id="new" checked> new visitor</label><br>
  <label>Price <input id="price" value="250" size="6"></label>
  <label>Currency <input id="currency" value="EUR" size="10"></label>
  <button id="connect" type="submit">Start chat</button>
</form>
<div id="log"></div>
<form id="answer">
  <input type="text" id="text" placeholder="Your answer" disabled>
  <button id="send" type="submit" disabled>Send</button>
  <button id="yes" type="button" disabled>Yes</button>
  <button id="no" type="button" disabled>No</button>
</form>
<p id="state" class="info">Not connected.</p>
<script>
{COMMON_JS}
const reportId = "{id}";
let socket = null, first = null;
const stateLine = document.getElementById('state');
const controls = ['text', 'send', 'yes', 'no'].map(id => document.getElementById(id));
function waiting(on) {{ controls.forEach(c => c.disabled = !on); if (on) controls[0].focus(); }}
const words = {{ en: ['Yes', 'No'], ru: ['Да', 'Нет'], pl: ['Tak', 'Nie'] }};
function reply(text) {{
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  show('me', text);
  waiting(false);
  socket.send(JSON.stringify(Object.assign({{}}, first, {{ message: text }})));
}}
document.getElementById('start').addEventListener('submit', ev => {{
  ev.preventDefault();
  if (socket) socket.close();
  log.innerHTML = '';
  const lang = document.getElementById('lang').value;
  first = {{
    lang,
    is_new_visitor: document.getElementById('new').checked,
    price: parseFloat(document.getElementById('price').value),
    currency: document.getElementById('currency').value,
  }};
  document.getElementById('yes').textContent = words[lang][0];
  document.getElementById('no').textContent = words[lang][1];
  socket = new WebSocket(wsUrl('/ws/chat/' + reportId));
  stateLine.textContent = 'Connecting...';
  socket.onopen = () => {{ stateLine.textContent = 'Connected: the bot is writing...'; socket.send(JSON.stringify(first)); }};
  socket.onmessage = ev => {{
    const data = JSON.parse(ev.data);
    if (data.error) {{ show('err', data.error); return; }}
    show('bot', data.message);
    if (data.status === 'waiting') {{ stateLine.textContent = 'Your turn.'; waiting(true); }}
    else {{ stateLine.textContent = 'The bot is writing...'; }}
  }};
  socket.onclose = ev => {{
    waiting(false);
    if (ev.code === 1000) {{
      stateLine.textContent = 'Chat closed: starting the checkout.';
      const a = show('info', 'Checkout would start now. After paying: ');
      const link = document.createElement('a');
      link.href = '/api/chatbot-demo/success/' + reportId + '/';
      link.textContent = 'the post-payment chat';
      link.id = 'checkout';
      a.appendChild(link);
    }} else {{
      stateLine.textContent = 'Connection closed (' + ev.code + (ev.reason ? ': ' + ev.reason : '') + ').';
    }}
  }};
}});
document.getElementById('answer').addEventListener('submit', ev => {{
  ev.preventDefault();
  const input = document.getElementById('text');
  reply(input.value);
  input.value = '';
}});
document.getElementById('yes').addEventListener('click', () => reply(document.getElementById('yes').textContent));
document.getElementById('no').addEventListener('click', () => reply(document.getElementById('no').textContent));
</script>"#
    );
    page(&format!("Engagement chat: {id}"), &body)
}

/// `GET /api/chatbot-demo/success/{report_id}/`. When the server runs with the public demo
/// secret (`serve --demo`), the page comes with a correctly signed sample of
/// `report_url_params`, as the payment system would hand it over. With any other secret it
/// signs nothing: a page that signed parameters with a real secret would hand anyone a paid
/// report's link.
#[handler]
pub fn success_page(Path(id): Path<String>, state: Data<&Site>) -> Response {
    if check_slug(&id).is_err() {
        return not_a_report();
    }
    let secret = state
        .settings
        .engagement
        .hash_secret
        .as_ref()
        .map(|s| s.expose_secret());
    let (sample, note) = match secret {
        Some(secret) if secret == crate::demo::REPORT_HASH_SECRET => {
            let pairs =
                "date=2023-10-8&time=12:44&tz=2&ln_d=37&ln_m=37&dir_ln=e&lt_d=55&lt_m=45&dir_lt=n";
            let signed_part = format!("{pairs}&report_id={id}");
            let hash = params::sign(secret.as_bytes(), &signed_part);
            // `&lt_d` would read as `<_d` in HTML text.
            let sample = format!("{pairs}&hash={hash}&report_id={id}").replace('&', "&amp;");
            (
                sample,
                "<p class=\"info\">The sample below is signed with the public demo secret.</p>",
            )
        }
        Some(_) => (
            String::new(),
            "<p class=\"info\">Paste the parameters a real payment returned: this server signs no samples with its secret.</p>",
        ),
        None => (
            String::new(),
            "<p class=\"err\">This server has no <code>CHATBOT_REPORT_HASH_SECRET</code>: paid reports are refused.</p>",
        ),
    };
    let body = format!(
        r#"<h1>After payment: <code>{id}</code></h1>
<p>This page speaks <code>/ws/chat-success/{id}</code> as a shop's frontend would after the payment.</p>
{note}
<form id="start">
  <label>Language <select id="lang"><option>en</option><option>ru</option><option>pl</option></select></label>
  <label><input type="checkbox" id="success" checked> payment succeeded</label><br>
  <label>report_url_params<br><textarea id="params" rows="3" cols="70">{sample}</textarea></label><br>
  <button id="connect" type="submit">Open chat</button>
</form>
<div id="log"></div>
<p id="state" class="info">Not connected.</p>
<script>
{COMMON_JS}
const reportId = "{id}";
const stateLine = document.getElementById('state');
let socket = null;
document.getElementById('start').addEventListener('submit', ev => {{
  ev.preventDefault();
  if (socket) socket.close();
  log.innerHTML = '';
  const success = document.getElementById('success').checked;
  const msg = {{ success, lang: document.getElementById('lang').value }};
  if (success) msg.report_url_params = document.getElementById('params').value.trim();
  socket = new WebSocket(wsUrl('/ws/chat-success/' + reportId));
  stateLine.textContent = 'Connecting...';
  socket.onopen = () => {{ stateLine.textContent = 'Connected.'; socket.send(JSON.stringify(msg)); }};
  socket.onmessage = ev => {{
    const data = JSON.parse(ev.data);
    if (data.error) {{ show('err', data.error); return; }}
    show('bot', data.message, data.report_url);
  }};
  socket.onclose = ev => {{
    stateLine.textContent = ev.code === 1000 ? 'Chat finished.' :
      'Connection closed (' + ev.code + (ev.reason ? ': ' + ev.reason : '') + ').';
  }};
}});
</script>"#
    );
    page(&format!("After payment: {id}"), &body)
}
