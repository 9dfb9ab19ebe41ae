"""A handful of labelled French and English calls used across the tests."""

CALLS = [
    {
        "external_id": "fr-panne-1",
        "language": "fr",
        "text": "Agent: Bonjour, service client, je vous écoute.\nClient: Bonjour, mon lave-linge "
        "Bosch Série 6 ne démarre plus depuis hier, il affiche l'erreur E18.\nAgent: Je vais "
        "ouvrir un dossier de réparation.",
    },
    {
        "external_id": "en-billing-1",
        "language": "en",
        "text": "Agent: Hello, how can I help?\nCustomer: I was charged twice on my March invoice "
        "for the Fibre 500 broadband.\nAgent: Let me check and refund the duplicate charge.",
    },
    {
        "external_id": "fr-resil-1",
        "language": "fr",
        "text": "Agent: Bonjour.\nClient: Je voudrais résilier mon forfait mobile 100 Go, je "
        "déménage à l'étranger.\nAgent: Très bien, je lance la résiliation.",
    },
    {
        "external_id": "en-delivery-1",
        "language": "en",
        "text": "Customer: Where is my order? The Dyson V15 vacuum was supposed to arrive Monday "
        "and the tracking hasn't moved.\nAgent: Let me check with the carrier.",
    },
    {
        "external_id": "fr-usage-1",
        "language": "fr",
        "text": "client bonjour euh je comprends pas comment on configure le wifi sur la box "
        "livebox six euh le voyant il clignote\nagent d'accord on va le faire ensemble",
    },
    {
        "external_id": "en-sales-1",
        "language": "en",
        "text": "Customer: Hi, how much is the unlimited 5G SIM plan, and is there an offer for "
        "new customers?\nAgent: It's 20 pounds a month, with the first three months half price.",
    },
]
