//! The checkout page's HTML: server-rendered, no JavaScript, readable on a phone, with
//! labels, visible focus and strong contrast. Pure functions from data to markup.

use crate::gateways::sandbox;
use crate::payments::domain::Payment;
use crate::payments::status::PaymentStatus;

/// What a page shows besides the payment.
pub struct Page<'a> {
    pub workspace: &'a str,
    pub payment: &'a Payment,
    pub key: &'a str,
    /// A message for the payer after a failed attempt.
    pub error: Option<&'a str>,
    /// Bank transfer instructions for a payment waiting on one.
    pub instructions: Option<&'a str>,
    /// A charge waits for the payer's authorization (a redirect flow).
    pub awaiting_payer: bool,
    /// The card form, when the mode has an enabled Stripe integration.
    pub card: Option<CardForm<'a>>,
}

/// What the card form gives Stripe.js: the integration and its publishable key.
pub struct CardForm<'a> {
    pub integration: &'a str,
    pub publishable_key: &'a str,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;background:#f4f4f5}\
main{max-width:28rem;margin:0 auto;padding:1.5rem 1rem}\
.card{background:#fff;border:1px solid #d4d4d8;border-radius:.75rem;padding:1.25rem}\
h1{font-size:1.25rem;margin:0 0 .25rem}\
.merchant{color:#3f3f46;margin:0 0 1rem}\
.amount{font-size:2rem;font-weight:700;margin:.25rem 0}\
dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;margin:1rem 0}\
dt{color:#3f3f46}dd{margin:0;text-align:right;font-weight:600}\
fieldset{border:0;padding:0;margin:1rem 0}\
legend{font-weight:600;margin-bottom:.5rem}\
label{display:flex;gap:.6rem;align-items:center;padding:.7rem;border:1px solid #a1a1aa;border-radius:.5rem;margin-bottom:.5rem;cursor:pointer}\
input[type=radio]{flex:none;width:1.2rem;height:1.2rem;margin:0}\
button{width:100%;padding:.9rem;font:inherit;font-weight:700;color:#fff;background:#1d4ed8;border:0;border-radius:.5rem;cursor:pointer}\
button:hover{background:#1e40af}\
button.secondary{background:#fff;color:#1d4ed8;border:2px solid #1d4ed8}\
a,button,input{outline-offset:3px}\
:focus-visible{outline:3px solid #b45309}\
.error{background:#fef2f2;border:1px solid #b91c1c;color:#7f1d1d;border-radius:.5rem;padding:.75rem;margin:1rem 0}\
.notice{background:#eff6ff;border:1px solid #1d4ed8;color:#1e3a8a;border-radius:.5rem;padding:.75rem;margin:1rem 0}\
.card-element{padding:.7rem;border:1px solid #a1a1aa;border-radius:.5rem;margin-bottom:.5rem}\
.card-element input{font:inherit;margin:.2rem;padding:.3rem;border:1px solid #d4d4d8;border-radius:.25rem}\
.test{display:inline-block;background:#fef3c7;color:#78350f;border-radius:.25rem;padding:0 .4rem;font-size:.85rem;font-weight:600}\
";

fn document(title: &str, body: &str) -> String {
    page_with(title, body, false)
}

/// A page; `card`: with Stripe.js and the card form's script (`/assets/checkout.js`), the
/// only scripts a checkout page ever loads.
fn page_with(title: &str, body: &str, card: bool) -> String {
    let scripts = if card {
        format!(
            "<script src=\"{}\"></script><script src=\"/assets/checkout.js\" defer></script>",
            escape(crate::gateways::stripe::js_url())
        )
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{}</title><style>{STYLE}</style>{scripts}</head>\
         <body><main><div class=\"card\">{body}</div></main></body></html>\n",
        escape(title)
    )
}

/// A page for an address that leads to no payable payment.
pub fn not_found() -> String {
    document(
        "Payment not found",
        "<h1>Payment not found</h1><p>This payment page does not exist or is no longer available. \
         Check the link you were given, or contact the merchant.</p>",
    )
}

/// A page that says what went wrong, in a heading and a sentence.
fn problem(title: &str, message: &str) -> String {
    document(
        title,
        &format!(
            "<h1>{}</h1><p role=\"alert\">{}</p>",
            escape(title),
            escape(message)
        ),
    )
}

/// When the service cannot answer now (its database is unreachable or busy).
pub fn unavailable() -> String {
    problem(
        "Temporarily unavailable",
        "Payments cannot be taken right now. Nothing was charged; please try again in a moment.",
    )
}

/// When something went wrong on our side (the cause is in the server's log).
pub fn fault() -> String {
    problem(
        "Something went wrong",
        "This page could not be shown. Please try again; if it happens again, contact the merchant.",
    )
}

/// When the request itself could not be read (a malformed form, say).
pub fn unreadable() -> String {
    problem(
        "That did not work",
        "The form could not be read. Go back to the payment page and try again.",
    )
}

/// A page for a payer who sent more than their key's rate allows.
pub fn throttled(wait: u64) -> String {
    let unit = if wait == 1 { "second" } else { "seconds" };
    problem(
        "Too many attempts",
        &format!("Please wait {wait} {unit}, then try again."),
    )
}

/// The payment's page: a form while it can be paid, otherwise its state.
pub fn payment(page: &Page) -> String {
    let p = page.payment;
    let amount = p.currency.for_people(p.amount);
    let balance = p.currency.for_people(p.balance());
    let test = if p.test_mode {
        " <span class=\"test\">Test mode</span>"
    } else {
        ""
    };
    let mut body = format!(
        "<h1>{}{test}</h1><p class=\"merchant\">Pay <strong>{}</strong></p>\
         <p class=\"amount\">{}</p>\
         <dl><dt>Status</dt><dd>{}</dd><dt>Left to pay</dt><dd>{}</dd></dl>",
        escape(&p.description),
        escape(page.workspace),
        escape(&amount),
        status_words(p.status),
        escape(&balance),
    );
    if p.amount_refunded > 0 {
        // What went back to the payer: the receipt says so.
        let refunded = p.currency.for_people(p.amount_refunded);
        let whole = if p.amount_refunded >= p.collected {
            " (in full)"
        } else {
            ""
        };
        body = body.replacen(
            "</dl>",
            &format!(
                "<dt>Refunded to you</dt><dd>{}{whole}</dd></dl>",
                escape(&refunded)
            ),
            1,
        );
    }
    if let Some(error) = page.error {
        body.push_str(&format!(
            "<div class=\"error\" role=\"alert\">{}</div>",
            escape(error)
        ));
    }
    match p.status {
        PaymentStatus::RequiresPaymentMethod
        | PaymentStatus::Incomplete
        | PaymentStatus::Failed => {
            if let Some(card) = &page.card {
                body.push_str(&card_form(page, card, &balance));
            }
            body.push_str(&form(page.key, p.test_mode, &balance));
        }
        PaymentStatus::Processing if page.awaiting_payer => {
            body.push_str(&format!(
                "<div class=\"notice\" role=\"status\">Your payment waits for your authorization.</div>\
                 <p><a href=\"/payments/{}/pay/?checkout={}\">Continue to authorize it</a></p>",
                p.id,
                escape(page.key)
            ));
        }
        PaymentStatus::Processing => {
            body.push_str("<div class=\"notice\" role=\"status\">Your payment is being processed. This page shows the result once it is known.</div>");
            if let Some(instructions) = page.instructions {
                body.push_str(&format!("<p>{}</p>", escape(instructions)));
            }
        }
        PaymentStatus::Succeeded => {
            let when = p
                .payment_date
                .map(|d| d.format(" on %Y-%m-%d").to_string())
                .unwrap_or_default();
            body.push_str(&format!(
                "<div class=\"notice\" role=\"status\">Paid{when}. Thank you. Keep this page as your receipt \
                 (payment {}).</div>",
                p.id
            ));
        }
        PaymentStatus::Cancelled => {
            body.push_str("<div class=\"error\" role=\"status\">This payment was cancelled by the merchant and can no longer be paid.</div>");
        }
    }
    if let Some(url) = &p.return_url {
        if matches!(
            p.status,
            PaymentStatus::Succeeded | PaymentStatus::Cancelled | PaymentStatus::Processing
        ) {
            body.push_str(&format!(
                "<p><a href=\"{}\">Back to the merchant</a></p>",
                escape(url)
            ));
        }
    }
    page_with(
        &format!("Pay {}", page.workspace),
        &body,
        page.card.is_some(),
    )
}

/// The card form: hidden until Stripe.js is there to take the card (the other ways to pay
/// need no script).
fn card_form(page: &Page, card: &CardForm, balance: &str) -> String {
    format!(
        "<form id=\"card-form\" hidden data-key=\"{}\" data-payment=\"{}\" data-integration=\"{}\" data-publishable-key=\"{}\">\
         <fieldset><legend>Pay by card</legend><div id=\"card-element\" class=\"card-element\"></div></fieldset>\
         <div id=\"card-error\" class=\"error\" role=\"alert\" hidden></div>\
         <button type=\"submit\">Pay {} by card</button></form><p class=\"merchant\">Or pay another way:</p>",
        escape(page.key),
        page.payment.id,
        escape(card.integration),
        escape(card.publishable_key),
        escape(balance)
    )
}

/// The card's authentication (3-D Secure), run by Stripe.js; then cobro asks Stripe how it
/// ended. Without the script, the payer authenticates as their bank asks and continues.
pub fn card_authentication(
    workspace: &str,
    payment: &Payment,
    key: &str,
    amount: &str,
    client_secret: &str,
    publishable_key: &str,
) -> String {
    let body = format!(
        "<h1>Authenticate this payment</h1>\
         <p class=\"merchant\">{} asks you to confirm a payment of</p><p class=\"amount\">{}</p>\
         <div class=\"notice\" role=\"status\">Your bank asks you to confirm it is you.</div>\
         <form id=\"card-authentication\" method=\"post\" action=\"/payments/{}/pay/?checkout={}\" \
         data-client-secret=\"{}\" data-publishable-key=\"{}\">\
         <input type=\"hidden\" name=\"decision\" value=\"authenticated\">\
         <p><button type=\"submit\">Continue</button></p></form>",
        escape(workspace),
        escape(amount),
        payment.id,
        escape(key),
        escape(client_secret),
        escape(publishable_key),
    );
    page_with("Authenticate this payment", &body, true)
}

fn status_words(status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::RequiresPaymentMethod => "Awaiting payment",
        PaymentStatus::Incomplete => "Partly paid",
        PaymentStatus::Processing => "Processing",
        PaymentStatus::Succeeded => "Paid",
        PaymentStatus::Failed => "Last attempt failed",
        PaymentStatus::Cancelled => "Cancelled",
    }
}

/// The methods the mode offers: the sandbox's test cards in test mode, bank transfer always.
fn form(key: &str, test_mode: bool, balance: &str) -> String {
    let mut options = String::new();
    let mut first = true;
    let mut option = |value: &str, label: &str| {
        let id = format!("m-{}", value.replace(':', "-"));
        let checked = if first { " checked" } else { "" };
        first = false;
        options.push_str(&format!(
            "<label for=\"{id}\"><input type=\"radio\" id=\"{id}\" name=\"method\" value=\"{}\"{checked}> {}</label>",
            escape(value),
            escape(label)
        ));
    };
    if test_mode {
        for (token, label) in sandbox::test_tokens() {
            option(&format!("sandbox:{token}"), &format!("Test card: {label}"));
        }
    }
    option("bank_transfer", "Bank transfer");
    format!(
        "<form method=\"post\" action=\"/pay/{}/\"><fieldset><legend>Pay with</legend>{options}</fieldset>\
         <button type=\"submit\">Pay {}</button></form>",
        escape(key),
        escape(balance)
    )
}

/// The sandbox's stand-in for a bank's authentication page, reached by a redirect.
pub fn sandbox_authorization(
    workspace: &str,
    payment: &Payment,
    key: &str,
    amount: &str,
) -> String {
    let body = format!(
        "<h1>Authorize this payment <span class=\"test\">Sandbox</span></h1>\
         <p class=\"merchant\">{} asks you to confirm a payment of</p><p class=\"amount\">{}</p>\
         <div class=\"notice\">This page stands in for your bank's authentication page (test mode: no real money).</div>\
         <form method=\"post\" action=\"/payments/{}/pay/?checkout={}\">\
         <p><button type=\"submit\" name=\"decision\" value=\"approve\">Authorize</button></p>\
         <p><button type=\"submit\" name=\"decision\" value=\"decline\" class=\"secondary\">Fail authentication</button></p>\
         </form>",
        escape(workspace),
        escape(amount),
        payment.id,
        escape(key),
    );
    document("Authorize this payment", &body)
}
