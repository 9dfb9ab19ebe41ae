"""The console's two languages: its words, and numbers and dates written the language's way
(Babel's CLDR data, shipped in the package: nothing fetched)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import UTC
from functools import cache

from babel import Locale
from babel.dates import format_skeleton, format_time
from babel.numbers import format_decimal, format_percent, get_group_symbol
from markupsafe import Markup, escape

LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = "en"

MESSAGES: dict[str, tuple[str, str]] = {
    # key: (English, French)
    "app.tagline": ("calls, products and reasons", "appels, produits et motifs"),
    "nav.overview": ("Overview", "Vue d'ensemble"),
    "nav.calls": ("Calls", "Appels"),
    "nav.review": ("Review", "Revue"),
    "nav.batches": ("Batches", "Lots"),
    "nav.models": ("Models", "Modèles"),
    "nav.main": ("Main navigation", "Navigation principale"),
    "nav.skip": ("Skip to content", "Aller au contenu"),
    "lang.switch": ("Français", "English"),
    "lang.switch_label": ("Afficher en français", "Show in English"),
    "auth.signed_in_as": ("Signed in as", "Connecté en tant que"),
    "auth.local": ("local (no sign-in on loopback)", "local (sans connexion en boucle locale)"),
    "auth.sign_out": ("Sign out", "Se déconnecter"),
    "auth.sign_in": ("Sign in", "Se connecter"),
    "auth.title": ("Sign in to callx", "Connexion à callx"),
    "auth.key": ("API key", "Clé d'API"),
    "auth.key_help": (
        "A key from `callx keys create --scope read|review|admin`. It opens a session in this "
        "browser; the key itself is not stored in it.",
        "Une clé créée par `callx keys create --scope read|review|admin`. Elle ouvre une "
        "session dans ce navigateur ; la clé elle-même n'y est pas conservée.",
    ),
    "auth.signed_out": ("You are signed out.", "Vous êtes déconnecté."),
    "auth.expired": (
        "Your session has ended; sign in again.",
        "Votre session a pris fin ; reconnectez-vous.",
    ),
    "filter.title": ("Filters", "Filtres"),
    "filter.from": ("From", "Du"),
    "filter.to": ("To (included)", "Au (inclus)"),
    "filter.source": ("Source", "Source"),
    "filter.any": ("any", "indifférent"),
    "filter.not_applied": (
        "These filters were not applied:",
        "Ces filtres n'ont pas été appliqués :",
    ),
    "filter.bucket": ("Per", "Par"),
    "filter.apply": ("Apply", "Appliquer"),
    "filter.reset": ("Reset", "Réinitialiser"),
    "bucket.day": ("day", "jour"),
    "bucket.week": ("week", "semaine"),
    "bucket.month": ("month", "mois"),
    "overview.title": ("Overview", "Vue d'ensemble"),
    "overview.calls": ("Calls with an answer", "Appels avec une réponse"),
    "overview.failed": ("Failed", "En échec"),
    "overview.waiting_model": ("Waiting for the model, now", "En attente du modèle, maintenant"),
    "overview.waiting_review": (
        "Waiting for a person, now",
        "En attente d'une personne, maintenant",
    ),
    "overview.accuracy": ("Production accuracy", "Exactitude en production"),
    "overview.over": ("over {n}", "plus de {n}"),
    "overview.coarsened": (
        "Shown per {shown}: per {asked}, this range would draw too many bars.",
        "Affiché par {shown} : par {asked}, cette période donnerait trop de barres.",
    ),
    "overview.accuracy_help": (
        "Reason right on the audit sample people reviewed (drawn at random: unbiased), with its "
        "95% interval.",
        "Motif juste sur l'échantillon d'audit revu par des personnes (tiré au hasard : sans "
        "biais), avec son intervalle à 95 %.",
    ),
    "overview.no_audit": ("no audit call reviewed yet", "aucun appel d'audit revu pour l'instant"),
    "overview.reviewed": ("reviewed", "revus"),
    "overview.per_reason": ("Calls per reason", "Appels par motif"),
    "overview.chart_label": (
        "Stacked bars: calls per reason per {bucket}. Each part links to its calls.",
        "Barres empilées : appels par motif par {bucket}. Chaque partie mène à ses appels.",
    ),
    "overview.as_table": ("The same figures as a table", "Les mêmes chiffres en tableau"),
    "overview.top_products": ("Top products", "Produits les plus cités"),
    "overview.no_calls": ("No call in this range.", "Aucun appel sur cette période."),
    "overview.total": ("Total", "Total"),
    "overview.product": ("Product", "Produit"),
    "overview.period": ("Period", "Période"),
    "calls.title": ("Calls", "Appels"),
    "calls.reason": ("Reason", "Motif"),
    "calls.product": ("Product", "Produit"),
    "calls.language": ("Language", "Langue"),
    "calls.status": ("Extraction", "Extraction"),
    "calls.review": ("Review", "Revue"),
    "calls.min_confidence": ("Confidence from", "Confiance à partir de"),
    "calls.max_confidence": ("Confidence up to", "Confiance jusqu'à"),
    "calls.when": ("When (UTC)", "Quand (UTC)"),
    "calls.confidence": ("Confidence", "Confiance"),
    "calls.answer_by": ("By", "Par"),
    "calls.call": ("Call", "Appel"),
    "calls.next": ("Next page", "Page suivante"),
    "calls.first": ("First page", "Première page"),
    "calls.csv": ("Download these calls (CSV)", "Télécharger ces appels (CSV)"),
    "calls.none": ("No call matches.", "Aucun appel ne correspond."),
    "status.succeeded": ("succeeded", "réussie"),
    "status.failed": ("failed", "en échec"),
    "status.queued": ("queued", "en file"),
    "status.running": ("running", "en cours"),
    "review.waiting": ("waiting for a person", "attend une personne"),
    "review.labelled": ("labelled", "étiqueté"),
    "review.auto": ("accepted automatically", "accepté automatiquement"),
    "review.audit": ("audit sample", "échantillon d'audit"),
    "review.audit_reviewed": ("audit sample, labelled", "échantillon d'audit, étiqueté"),
    "by.model": ("model", "modèle"),
    "by.label": ("person", "personne"),
    "call.title": ("Call", "Appel"),
    "call.transcript": ("Transcript", "Transcription"),
    "call.answer": ("The answer that counts", "La réponse retenue"),
    "call.machine": ("The model's answer", "La réponse du modèle"),
    "call.label": ("Human label", "Étiquette humaine"),
    "call.no_label": ("Nobody labelled this call.", "Personne n'a étiqueté cet appel."),
    "call.attempts": ("Every extraction", "Toutes les extractions"),
    "call.labels": ("Label history", "Historique des étiquettes"),
    "call.label_it": ("Label this call", "Étiqueter cet appel"),
    "call.model": ("Model", "Modèle"),
    "call.prompt": ("Prompt", "Prompt"),
    "call.reader": ("definitions read by reader {sha}", "définitions lues par le lecteur {sha}"),
    "call.taxonomy": ("Taxonomy", "Taxonomie"),
    "call.current": ("current", "actuelle"),
    "call.error": ("Error", "Erreur"),
    "call.metadata": ("Metadata", "Métadonnées"),
    "call.by": ("by", "par"),
    "call.replaced": ("replaced the model's", "a remplacé celle du modèle"),
    "call.version": ("Version", "Version"),
    "call.note": ("Note", "Note"),
    "call.no_product": ("no product", "aucun produit"),
    "call.uncalibrated": ("raw score, not calibrated", "score brut, non calibré"),
    "call.not_extracted": ("Not extracted yet.", "Pas encore extrait."),
    "call.when": ("When", "Quand"),
    "review.title": ("Review", "Revue"),
    "review.queue_empty": (
        "Nothing waits for a person. Well done.",
        "Rien n'attend de personne. Bravo.",
    ),
    "review.queue_end": (
        "No more calls after the ones you skipped.",
        "Plus d'appel après ceux que vous avez passés.",
    ),
    "review.start_over": ("Back to the top of the queue", "Revenir en tête de file"),
    "review.keys": (
        "Keys: 1–9 pick a reason, e edits the product, Enter saves (the model's answer when "
        "nothing changed), s skips.",
        "Touches : 1–9 choisissent un motif, e modifie le produit, Entrée enregistre (la réponse "
        "du modèle si rien n'a changé), s passe.",
    ),
    "review.why": ("Why it is here", "Pourquoi il est ici"),
    "cause.failed": ("the model failed", "le modèle a échoué"),
    "cause.low_confidence": ("low confidence", "confiance faible"),
    "cause.uncalibrated": ("no calibrated confidence", "pas de confiance calibrée"),
    "cause.product_not_said": ("product not said in the call", "produit absent de l'appel"),
    "cause.audit": ("drawn for the audit sample", "tiré pour l'échantillon d'audit"),
    "cause.explore": (
        "drawn at random (to learn from)",
        "tiré au hasard (pour l'apprentissage)",
    ),
    "review.reason": ("Reason", "Motif"),
    "review.product": ("Product (empty: none)", "Produit (vide : aucun)"),
    "review.note": ("Note (optional)", "Note (facultative)"),
    "review.confirm": ("Confirm the model's answer", "Confirmer la réponse du modèle"),
    "review.save": ("Save the correction", "Enregistrer la correction"),
    "review.skip": ("Skip", "Passer"),
    "review.changed": ("changed", "modifié"),
    "review.saved": ("Saved", "Enregistré"),
    "review.kept": ("the model's answer confirmed", "réponse du modèle confirmée"),
    "review.read_only": (
        "Your key has scope {scope}: you can see the queue but not label.",
        "Votre clé a la portée {scope} : vous voyez la file mais ne pouvez pas étiqueter.",
    ),
    "review.stale": ("Not saved", "Non enregistré"),
    "review.conflict_help": (
        "Someone labelled this call first: their label is shown beside the transcript. Your "
        "choice is kept below; press Enter to save it over theirs, or leave it.",
        "Quelqu'un a étiqueté cet appel avant vous : son étiquette est affichée à côté de la "
        "transcription. Votre choix est conservé ci-dessous ; Entrée l'enregistre à la place "
        "du sien, sinon laissez-le.",
    ),
    "review.position": ("Call {n} of the queue", "Appel {n} de la file"),
    "batches.title": ("Batches", "Lots"),
    "batches.received": ("Received", "Reçus"),
    "batches.accepted": ("Accepted", "Acceptés"),
    "batches.duplicates": ("Duplicates", "Doublons"),
    "batches.rejected": ("Rejected", "Refusés"),
    "batches.progress": ("Progress", "Avancement"),
    "batches.done": ("done", "terminé"),
    "batches.none": ("No batch yet.", "Aucun lot pour l'instant."),
    "batches.when": ("Received at (UTC)", "Reçu le (UTC)"),
    "batches.older": ("Older batches", "Lots plus anciens"),
    "models.title": ("Models", "Modèles"),
    "models.workers": ("Workers running now", "Workers actifs maintenant"),
    "models.no_workers": (
        "No live worker: calls wait until one starts (`callx worker`).",
        "Aucun worker actif : les appels attendent qu'un worker démarre (`callx worker`).",
    ),
    "models.configured": ("This server's configuration", "Configuration de ce serveur"),
    "models.backend": ("Backend", "Moteur"),
    "models.model": ("Model", "Modèle"),
    "models.taxonomy": ("Taxonomy", "Taxonomie"),
    "models.queues": ("Queues", "Files"),
    "models.last_seen": ("Last seen (UTC)", "Vu pour la dernière fois (UTC)"),
    "models.evaluations": (
        "Eval figures recorded in the adapter's card",
        "Évaluations inscrites dans la fiche de l'adaptateur",
    ),
    "models.no_card": (
        "No card: no eval figure is recorded for this model.",
        "Pas de fiche : aucune évaluation n'est inscrite pour ce modèle.",
    ),
    "models.dataset": ("Data set", "Jeu de données"),
    "models.calls": ("Calls", "Appels"),
    "models.reason_accuracy": ("Reason right", "Motif juste"),
    "models.product": ("Product right", "Produit juste"),
    "models.calibration": ("Calibration error", "Erreur de calibration"),
    "models.production": ("In production (audit sample)", "En production (échantillon d'audit)"),
    "models.auto_accepted": ("Accepted without a person", "Acceptés sans personne"),
    "models.auto_accuracy": ("right on the audit sample:", "justes sur l'échantillon d'audit :"),
    "models.registry": ("Registered adapters", "Adaptateurs enregistrés"),
    "models.name": ("Name", "Nom"),
    "models.registered": ("Registered (UTC)", "Enregistré (UTC)"),
    "models.gate": (
        "Reason right: it / the promoted one · calls · verdict",
        "Motif juste : lui / le promu · appels · verdict",
    ),
    "models.promoted": ("promoted", "promu"),
    "models.promoted_for": ("promoted for {version}", "promu pour {version}"),
    "models.guard_lost": (
        "guard {dataset}: {points} points lost, {allowed} allowed",
        "garde {dataset} : {points} points perdus, {allowed} permis",
    ),
    "models.registry_help": (
        "Register, evaluate and promote with `callx models` (see the README).",
        "Enregistrer, évaluer et promouvoir : `callx models` (voir le README).",
    ),
    "models.trained_on": ("Taxonomies trained on", "Taxonomies d'entraînement"),
    "models.calibrated_on": ("Calibrated on", "Calibré sur"),
    "error.title": ("Something is wrong", "Un problème est survenu"),
    "error.csrf": (
        "This form was not sent from a page of this session (CSRF token missing or wrong). "
        "Reload the page and send it again.",
        "Ce formulaire ne vient pas d'une page de cette session (jeton CSRF absent ou faux). "
        "Rechargez la page et renvoyez-le.",
    ),
    "error.back": ("Back to the overview", "Retour à la vue d'ensemble"),
    "common.none": ("none", "aucun"),
    "common.yes": ("yes", "oui"),
    "common.no": ("no", "non"),
}


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The console's language: the switch's cookie, else the browser's first language callx
    speaks (Accept-Language, by weight), else English."""
    if cookie in LANGUAGES:
        return cookie  # type: ignore[return-value]
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        if weight <= 0:  # q=0: "not this language"
            continue
        ranked.append((-weight, position, tag.strip().lower().split("-")[0]))
    for _, _, language in sorted(ranked):
        if language in LANGUAGES:
            return language
    return DEFAULT_LANGUAGE


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(language)


@dataclass(frozen=True)
class Words:
    """The words and formats of one language, for the templates."""

    language: str

    def __call__(self, key: str, **values: object) -> str:
        text = MESSAGES[key][LANGUAGES.index(self.language)]
        return text.format(**values) if values else text

    def code(self, key: str, **values: object) -> Markup:
        """A message whose `...` spans are commands, shown as code (the rest escaped)."""
        parts = self(key, **values).split("`")
        return Markup("").join(
            Markup("<code>{}</code>").format(part) if i % 2 else escape(part)
            for i, part in enumerate(parts)
        )

    def number(self, value: int | float | None) -> str:
        if value is None:
            return "–"
        if isinstance(value, int):  # most numbers of a page: Babel's general path is slow
            return f"{value:,}".replace(",", _group_symbol(self.language))
        return format_decimal(value, locale=_locale(self.language))

    def percent(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return "–"
        return format_percent(
            value, format=_percent_pattern(self.language, digits), locale=_locale(self.language)
        )

    def datetime(self, value: dt.datetime | None) -> str:
        """A time in UTC, to the minute (the console says UTC in its headings)."""
        if value is None:
            return "–"
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        locale = _locale(self.language)
        day = format_skeleton("yMMMd", value, locale=locale)
        time = format_time(value, "HH:mm", locale=locale)
        joined = str(locale.datetime_formats["medium"]).replace("'", "")
        return joined.replace("{1}", day).replace("{0}", time)

    def date(self, value: dt.date | dt.datetime | None, skeleton: str = "yMMMd") -> str:
        """A day (`skeleton` "MMMd" for a short one, "yMMM" for a month)."""
        if value is None:
            return "–"
        return format_skeleton(skeleton, value, locale=_locale(self.language))


@cache
def _percent_pattern(language: str, digits: int) -> str:
    pattern = str(_locale(language).percent_formats[None].pattern)
    return pattern.replace("#,##0", "#,##0." + "0" * digits if digits else "#,##0")


@cache
def _group_symbol(language: str) -> str:
    return get_group_symbol(_locale(language))
