"""The `tickets` pack: triage customer support tickets into fixed categories.

Tickets are assembled from per-category templates (each names its problem in words a human
would file unambiguously under that category, and avoids the other categories' giveaways),
with varied greetings, products, amounts and sign-offs. The categories are shown as lettered
options and graded with `choice`, so an answer is one letter and needs no spelling leniency.
"""

from __future__ import annotations

import random
import string

from entrepot.bench.schema import GraderSpec, TaskItem

DESCRIPTION = "Classify support tickets: billing, technical, account, shipping, refund, other"

CATEGORIES = {
    "billing": "charges, invoices, prices and payment methods",
    "technical": "errors, crashes, bugs and things not working in the product",
    "account": "signing in, passwords, usernames and profile access",
    "shipping": "delivery, tracking, parcels and addresses for orders",
    "refund": "getting money back for an order or a cancellation",
    "other": "anything else: feedback, questions, partnerships, jobs",
}
LETTERS = dict(zip(CATEGORIES, string.ascii_uppercase, strict=False))
TEMPLATES = {
    "billing": (
        "I was charged twice for my {plan} plan this month. Both charges of {amount} are on "
        "my card statement. Can you check what happened?",
        "The invoice for {month} says {amount}, but my plan should cost less than that. "
        "Could you correct the invoice?",
        "My card expires soon and I need to update the payment method on file before the "
        "next charge goes through.",
        "Why did my bill go up to {amount} this month? Nobody told me about a price change.",
        "Please send me a VAT invoice for my last payment of {amount}; our accountant needs it.",
    ),
    "technical": (
        "The app crashes every time I open the settings screen on my {device}.",
        "I keep getting error {code} when I try to export a report. I have already restarted "
        "my {device}.",
        "Since the latest update the dashboard freezes after a few seconds and I have to force "
        "close it on my {device}.",
        "Files stopped syncing between my {device} and the website two days ago. Looks like a "
        "bug on your side.",
        "The reports page shows a spinning wheel and won't load, on my {device} and on my "
        "colleague's too.",
    ),
    "account": (
        "I forgot my password and the reset email never comes through. How do I get back in?",
        "I can't log in since I changed phones: the two-factor codes still go to my old number.",
        "Please change the username on my profile from {old} to {new}.",
        "I see a login from {city} that wasn't me. Please lock my profile and reset my password.",
        "How do I let a colleague sign in to our shared profile without sharing my password?",
    ),
    "shipping": (
        "My package for order {order} was due on {day} and still hasn't turned up. The tracking "
        "page hasn't changed in days.",
        "The courier left my parcel at the wrong address. Can you find out where it went? "
        "Order {order}.",
        "Can I change the delivery address for order {order}? It hasn't shipped yet.",
        "Tracking says my {product} was delivered on {day} but there is nothing at my door.",
        "How long does delivery to {country} usually take? I ordered a {product} on {day}.",
    ),
    "refund": (
        "I sent the {product} back two weeks ago and would like my refund processed. "
        "Order {order}.",
        "The {product} came broken. I don't want a replacement, I want my money back.",
        "I cancelled within the 14-day window, so please refund the {amount} I paid.",
        "You promised to reimburse me {amount} for the late order. When will I see it?",
        "The {product} doesn't do what the description said. Please issue a full refund to "
        "my card.",
    ),
    "other": (
        "Just wanted to leave some feedback: the {product} I bought is brilliant. Keep it up!",
        "Do you have any job openings at your {city} office? I'd love to work with you.",
        "We'd like to discuss a partnership with your company for our event in {city}.",
        "What are your opening hours on public holidays? I'd like to visit the {city} shop.",
        "A small suggestion: a dark mode for the website would be lovely.",
    ),
}
SLOTS = {
    "plan": ("Basic", "Team", "Pro", "Family"),
    "month": ("January", "March", "June", "September", "November"),
    "device": ("iPhone", "Android phone", "Windows laptop", "MacBook", "iPad"),
    "old": ("sam_k", "marta88", "jdoe", "coffee_fan"),
    "new": ("sam.kowalski", "marta.r", "john.doe", "beanlover"),
    "city": ("Lisbon", "Manchester", "Denver", "Osaka", "Lyon"),
    "day": ("Monday", "Tuesday", "Thursday", "Friday", "the 12th", "the 3rd"),
    "product": ("coffee grinder", "standing desk", "phone case", "rice cooker", "desk chair"),
    "country": ("Canada", "Ireland", "Portugal", "Norway", "New Zealand"),
}
GREETINGS = ("Hi,", "Hello support team,", "Good morning,", "To whom it may concern,", "")
EXTRAS = ("This is quite urgent for me.", "I've been a customer for years.", "", "")
NAMES = ("Alex", "Jordan", "Priya", "Tomasz", "Chloe", "Ravi", "Nadia", "Ben")
SIGNOFFS = ("Thanks,\n{name}", "Regards,\n{name}", "{name}", "Cheers, {name}")


def _fill(rng: random.Random, template: str) -> str:
    values = {slot: rng.choice(options) for slot, options in SLOTS.items()}
    values["amount"] = f"${rng.randrange(500, 30000) / 100:.2f}"
    values["order"] = f"#{rng.randint(100000, 999999)}"
    values["code"] = f"E{rng.randint(100, 999)}"
    return template.format(**values)


def _ticket(rng: random.Random, category: str) -> str:
    """One ticket's text for `category`: greeting, problem, optional aside and sign-off."""
    body = _fill(rng, rng.choice(TEMPLATES[category]))
    parts = [rng.choice(GREETINGS), f"{body} {rng.choice(EXTRAS)}".strip()]
    parts.append(rng.choice(SIGNOFFS).format(name=rng.choice(NAMES)))
    return "\n\n".join(part for part in parts if part)


def _question(text: str) -> str:
    options = "\n".join(f"{LETTERS[name]}) {name}: {what}" for name, what in CATEGORIES.items())
    return (
        "Classify this customer support ticket into exactly one category.\n\n"
        f'{options}\n\nTicket:\n"""\n{text}\n"""\n\nAnswer with the letter only.'
    )


def generate(rng: random.Random, size: int) -> list[TaskItem]:
    """Categories rotate so every prefix of the pack is balanced between them."""
    names = list(CATEGORIES)
    items = []
    for n in range(size):
        category = names[n % len(names)]
        items.append(
            TaskItem(
                id=f"tickets-{n}",
                task="tickets",
                messages=[{"role": "user", "content": _question(_ticket(rng, category))}],
                expected=LETTERS[category],
                grader=GraderSpec(kind="choice"),
                tags=["tickets", category],
            )
        )
    return items
