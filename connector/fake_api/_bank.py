"""Word banks for the simulated Piper API: scenario names, judge questions and prose sentences.

Kept apart from the generator so data.py stays readable; nothing here is random by itself.
"""

from __future__ import annotations

# (name, description, tags)
SCENARIOS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Refund request with missing order number",
     "Customer wants a refund but cannot find the order number; the agent must look it up safely.",
     ("refunds", "billing")),
    ("Password reset for locked account",
     "Account locked after too many attempts; the agent verifies identity before any reset.",
     ("auth", "security")),
    ("Upgrade plan mid-billing cycle",
     "Customer upgrades from Starter to Pro halfway through the month and asks about proration.",
     ("billing", "sales")),
    ("Shipping address change after dispatch",
     "Parcel already left the warehouse; the agent explains options without promising a redirect.",
     ("shipping",)),
    ("Cancel subscription and request prorated refund",
     "Customer cancels an annual plan in month four and expects money back.",
     ("billing", "refunds", "churn")),
    ("Angry customer escalation to a human",
     "Third contact about the same broken device; the customer demands a manager.",
     ("escalation", "tone")),
    ("Double charge on credit card",
     "Two identical charges appear on the statement; one is a pending authorisation.",
     ("billing", "payments")),
    ("Product availability question in Spanish",
     "Customer writes in Spanish about stock levels of a discontinued item.",
     ("i18n", "catalog")),
    ("Appointment rescheduling with timezone confusion",
     "Customer travelling between Lisbon and New York wants to move a call.",
     ("scheduling",)),
    ("Warranty claim with damaged item photos",
     "Customer uploads photos of a cracked screen and asks for a replacement under warranty.",
     ("warranty", "returns")),
    ("GDPR data deletion request",
     "Customer asks for all personal data to be erased and wants written confirmation.",
     ("privacy", "compliance")),
    ("Promo code not applied at checkout",
     "Code WELCOME15 was rejected; the agent checks eligibility and expiry dates.",
     ("promotions", "checkout")),
    ("Two-factor authentication code not received",
     "SMS codes never arrive; the customer changed phone numbers last week.",
     ("auth", "security")),
    ("Order status for split shipment",
     "Half of the order arrived; the customer asks where the rest is.",
     ("shipping", "orders")),
)

# (question, is_deterministic)
QUESTIONS: tuple[tuple[str, bool], ...] = (
    ("Did the agent ask for the order number before promising a refund?", False),
    ("Did the agent verify the customer's identity before changing account details?", False),
    ("Was the tone empathetic and professional throughout the reply?", False),
    ("Did the agent avoid sharing personal data belonging to other customers?", False),
    ("Did the agent offer a clear escalation path to a human?", False),
    ("Did the agent state the refund policy accurately, including the 30-day window?", False),
    ("Did the agent avoid promising a delivery date it cannot guarantee?", False),
    ("Did the agent summarise the next steps at the end of the message?", False),
    ("Did the agent reply in the same language the customer used?", False),
    ("Did the agent avoid inventing order details that were not in the conversation?", False),
    ("Did the agent acknowledge the customer's frustration before troubleshooting?", False),
    ("Did the agent explain how proration is calculated for the remaining days?", False),
    ("Did the agent refuse to bypass two-factor authentication?", False),
    ("Did the agent confirm the new appointment time in the customer's timezone?", False),
    ("Did the agent ask for photos or a serial number before approving the claim?", False),
    ("Did the agent point to the privacy request form instead of deleting data in chat?", False),
    ("Did the agent check the promo code's expiry date and eligibility rules?", False),
    ("Did the agent distinguish a pending authorisation from a completed charge?", False),
    ("Did the agent keep the answer focused on the customer's actual question?", False),
    ("Did the agent avoid blaming the customer for the problem?", False),
    ("Does the response contain no email addresses or phone numbers?", True),
    ("Is the response shorter than 180 words?", True),
    ("Does the response include a link to the help centre?", True),
    ("Does the response avoid the words 'guarantee' and 'promise'?", True),
)

USER_MESSAGES: tuple[str, ...] = (
    "Hi, I was charged twice this month and I'd like one of those payments back.",
    "I can't find my order number anywhere, the confirmation email never arrived.",
    "This is the third time I'm contacting you about this. Can I talk to a real person?",
    "Can you change the delivery address? I moved last week.",
    "Why does my invoice show a different amount than the pricing page?",
    "The code WELCOME15 says it is invalid but the newsletter said it's valid until Friday.",
    "¿Tienen todavía el modelo azul en talla M? No lo encuentro en la web.",
    "I'm in Lisbon right now, so is the call at 3pm your time or mine?",
    "Please delete everything you have about me and confirm it in writing.",
    "I never got the SMS code. I changed my number recently, could that be it?",
    "Half my order arrived, where's the rest?",
    "The screen cracked after two weeks, I have photos. Is that covered?",
    "OK, and what happens to the money I already paid for the annual plan?",
    "Fine. What do you need from me?",
    "That doesn't answer my question.",
    "Thanks, that helps. One more thing: can I get a receipt for the refund?",
    "I already tried turning it off and on again.",
    "Could you just do it for me? I don't have time for forms.",
)

RESPONSE_SENTENCES: tuple[str, ...] = (
    "I'm sorry about the trouble this has caused, and I understand why you're frustrated.",
    "Let me look into this for you right away.",
    "To find your order without the number, could you tell me the email address you used at checkout?",
    "I can see two transactions on the account: one is a completed charge and the other is a pending "
    "authorisation that your bank will release within three to five business days.",
    "Refunds are available within 30 days of delivery for items in their original condition.",
    "Once the refund is issued it usually takes five to ten business days to appear on your statement.",
    "For your security I'll need to verify your identity before making any changes to the account.",
    "I've sent a one-time verification link to the email address we have on file.",
    "Because the parcel has already been handed to the carrier, I can't change the address from here, "
    "but the carrier's redirect service may be able to help.",
    "Your upgrade to the Pro plan takes effect immediately, and the price difference is prorated for "
    "the remaining days of the billing cycle.",
    "I've escalated this conversation to a senior member of the support team, who will reply within "
    "one business day.",
    "The promo code WELCOME15 applies only to first orders over €40 placed before midnight on Friday.",
    "Sí, el modelo azul en talla M sigue disponible en nuestro almacén de Madrid.",
    "To confirm, your new appointment is on Tuesday at 15:00 Lisbon time, which is 10:00 in New York.",
    "Could you upload a photo of the damage and the serial number printed on the back of the device?",
    "You can submit a data deletion request through the privacy form, and we'll confirm in writing "
    "once it has been processed.",
    "I can't bypass two-factor authentication, but I can help you update the phone number on file "
    "after a short identity check.",
    "The second part of your order is on its way and should arrive in two to three days.",
    "Here's a summary of what happens next: we'll process the request, email you a confirmation, "
    "and follow up if anything else is needed.",
    "You can find more details in our help centre at https://help.example.com/refunds.",
    "I don't have access to that information, so I won't guess; let me check with the right team.",
    "Is there anything else I can help you with today?",
    "Thank you for your patience while I checked this — I know waiting is never fun.",
    "I've added a note to your account so that the next agent has the full context.",
    "If the charge is still showing after five business days, reply to this message and we'll chase "
    "it with the payment provider.",
    "Just to make sure I've understood correctly: you'd like to cancel the annual plan and receive a "
    "refund for the unused months?",
    "Our café partners in Zürich and Köln also accept the voucher, in case that's more convenient.",
)

CRITIQUE_SENTENCES: tuple[str, ...] = (
    "The agent addressed the customer's main concern directly in its opening sentence.",
    "The response acknowledges the customer's frustration before moving on to the fix, which matches "
    "the rubric's expectation for empathy.",
    "The agent asked for the email address used at checkout instead of inventing an order number.",
    "No personal data about other customers appears anywhere in the reply.",
    "The refund window is stated as 30 days, which is consistent with the policy document provided in "
    "the scenario context.",
    "The agent did not promise a specific delivery date, correctly deferring to the carrier.",
    "The reply ends with a clear summary of next steps, so the customer knows what to expect.",
    "However, the agent never explicitly confirmed the customer's identity before discussing the "
    "account, which the criterion requires.",
    "The response drifts into an unrelated upsell in its final paragraph, which dilutes the answer.",
    "The agent invented a tracking number that does not appear anywhere in the conversation history.",
    "The tone remains professional even though the customer used strong language.",
    "The explanation of proration is correct but would benefit from a worked example.",
    "The agent switched to Spanish to match the customer, as the criterion asks.",
    "The agent refused to skip two-factor authentication and offered a safe alternative instead.",
    "Taken as a whole, the turn satisfies the intent of the criterion even if the wording is terse.",
    "Taken as a whole, the turn does not satisfy the criterion because the key requirement is missing.",
    "The link to the help centre is present and points to the relevant article.",
    "The agent's message is longer than necessary, repeating the same apology twice.",
    "There is no evidence that the agent checked the promo code's expiry date before answering.",
    "The timezone conversion is accurate for the date in question, including daylight saving time.",
)


def evidence_prefix(index: int) -> str:
    """A short lead-in for a quoted excerpt, varied so evidence does not all start alike."""
    prefixes = ("The agent wrote: ", "Quote from turn: ", "Relevant excerpt: ", "Agent response: ")
    return prefixes[index % len(prefixes)]


LOGIN_PAGE_HTML = b"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - Piper</title></head>
<body>
<main class="login">
  <h1>Sign in to Piper</h1>
  <p>Your session has expired. Please sign in again to continue.</p>
  <form method="post" action="/login">
    <label>Email <input type="email" name="email"></label>
    <label>Password <input type="password" name="password"></label>
    <button type="submit">Sign in</button>
  </form>
</main>
</body>
</html>
"""


def gateway_page(status: int, reason: str) -> bytes:
    """An nginx-style HTML error page, as a load balancer in front of the API would send."""
    return (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
