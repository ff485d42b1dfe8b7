// The checkout page's card form, with Stripe.js: the card goes from the payer's browser to
// Stripe, never to cobro. Pages work without this script for every other way to pay.
"use strict";
(function () {
  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then(function (answer) {
      return answer.json().then(function (json) {
        return { ok: answer.ok, body: json };
      });
    });
  }

  function firstError(body) {
    if (body && body.detail) return body.detail;
    for (var field in body || {}) {
      var messages = body[field];
      if (Array.isArray(messages) && messages.length) return messages[0];
    }
    return "The payment could not be made. Please try again.";
  }

  // The payment page: a card form, shown only when Stripe.js is here.
  var form = document.getElementById("card-form");
  if (form && typeof Stripe === "function") {
    var data = form.dataset;
    var stripe = Stripe(data.publishableKey);
    var card = stripe.elements().create("card");
    var error = document.getElementById("card-error");
    var button = form.querySelector("button");
    card.mount("#card-element");
    form.hidden = false;
    var say = function (message) {
      error.textContent = message;
      error.hidden = false;
      button.disabled = false;
    };
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      error.hidden = true;
      // Stripe.js makes a PaymentMethod; an emulator without one, a card token.
      Promise.resolve(stripe.createPaymentMethod({ type: "card", card: card }))
        .then(function (made) {
          if (made && made.paymentMethod) return { payment_method: made.paymentMethod.id };
          if (made && made.error) throw made.error;
          return stripe.createToken(card).then(function (made) {
            if (made.error) throw made.error;
            return { token: made.token.id };
          });
        })
        .then(function (gatewayData) {
          return post("/sources/", {
            checkout: data.key,
            gateway: "stripe",
            integration: data.integration,
            gateway_data: gatewayData,
          });
        })
        .then(function (source) {
          if (!source.ok) throw { message: firstError(source.body) };
          return post("/payments/" + data.payment + "/authorize/", {
            checkout: data.key,
            source: source.body.id,
          });
        })
        .then(function (paid) {
          if (!paid.ok) throw { message: firstError(paid.body) };
          if (paid.body.status === "failed") {
            throw { message: "The card was declined (" + paid.body.failed_reason + "). Try another card or another way to pay." };
          }
          // On to the landing, or to the card's authentication first (3-D Secure).
          window.location.assign("/payments/" + data.payment + "/pay/?checkout=" + data.key);
        })
        .catch(function (failure) {
          say((failure && failure.message) || "The payment could not be made. Please try again.");
        });
    });
  }

  // The authentication page (3-D Secure): Stripe.js asks the payer's bank, then cobro asks
  // Stripe how it ended.
  var authentication = document.getElementById("card-authentication");
  if (authentication && typeof Stripe === "function") {
    var secret = authentication.dataset.clientSecret;
    Stripe(authentication.dataset.publishableKey)
      .confirmCardPayment(secret)
      .then(function () {
        authentication.submit();
      });
  }
})();
