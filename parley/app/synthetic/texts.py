"""The phrasebook of the synthetic day: what customers, bots and agents write, in French and English.

Pure data plus one picker. Slots in ``{braces}``: ``order`` (CMD-12345), ``amount``, ``name``,
``agent``, ``phone``. Each intent has several phrasings so the enrichment processors see variety.
"""

from __future__ import annotations

import random

# Intents of the day. Routine ones are answered by the bot first (when the enrichment is sure).
ROUTINE = ("order_status", "greeting")
HUMAN = ("refund", "cancellation", "complaint", "billing", "delivery_problem", "human_request")

OPENING: dict[str, dict[str, tuple[str, ...]]] = {
    "order_status": {
        "fr": ("Bonjour, où en est ma commande {order} ?",
               "Bonjour, je n'ai pas encore reçu ma commande {order}, pouvez-vous me dire où elle en est ?",
               "Salut, quand est-ce que la commande {order} sera livrée ?",
               "Bonjour, pourriez-vous me donner le suivi de la commande {order} s'il vous plaît ?",
               "Ma commande {order} est-elle bien partie ?"),
        "en": ("Hi, where is my order {order}?",
               "Hello, can you tell me the status of order {order} please?",
               "When will my order {order} be delivered?",
               "Hi there, I'd like a tracking update for order {order}.",
               "Has my order {order} shipped yet?"),
    },
    "refund": {
        "fr": ("Bonjour, je souhaite être remboursé pour la commande {order}, l'article ne me convient pas.",
               "J'ai renvoyé le colis {order} il y a deux semaines et toujours aucun remboursement.",
               "Bonjour, comment obtenir le remboursement de ma commande {order} de {amount} € ?",
               "Je voudrais un remboursement, le produit de la commande {order} est arrivé cassé."),
        "en": ("Hi, I'd like a refund for order {order}, the item doesn't fit.",
               "I returned parcel {order} two weeks ago and still no refund.",
               "How do I get my money back for order {order} ({amount} €)?",
               "I want a refund, the product from order {order} arrived broken."),
    },
    "cancellation": {
        "fr": ("Bonjour, je voudrais annuler ma commande {order}.",
               "Est-il encore possible d'annuler la commande {order} ? Je me suis trompé de taille.",
               "Merci d'annuler la commande {order}, je n'en ai plus besoin."),
        "en": ("Hello, I'd like to cancel my order {order}.",
               "Can I still cancel order {order}? I picked the wrong size.",
               "Please cancel order {order}, I don't need it anymore."),
    },
    "complaint": {
        "fr": ("C'est inadmissible, troisième fois que je vous écris pour la commande {order} "
               "et personne ne répond !",
               "Je suis très mécontent de votre service, la commande {order} est une catastrophe.",
               "Service client déplorable. Ma commande {order} est toujours bloquée, c'est honteux.",
               "Franchement déçu : article abîmé, livreur désagréable, commande {order}."),
        "en": ("This is unacceptable, third time I'm writing about order {order} and nobody answers!",
               "I'm very unhappy with your service, order {order} has been a disaster.",
               "Terrible customer service. Order {order} is still stuck, this is shameful.",
               "Really disappointed: damaged item and a rude courier, order {order}."),
    },
    "billing": {
        "fr": ("Bonjour, j'ai été débité deux fois pour la commande {order}.",
               "Ma facture pour la commande {order} est incorrecte, le montant de {amount} € ne correspond pas.",
               "Pouvez-vous m'envoyer la facture de la commande {order} ?",
               "Un prélèvement de {amount} € que je ne reconnais pas apparaît sur mon compte."),
        "en": ("Hi, I was charged twice for order {order}.",
               "My invoice for order {order} is wrong, the amount of {amount} € doesn't match.",
               "Could you send me the invoice for order {order}?",
               "There's a {amount} € charge on my card I don't recognise."),
    },
    "delivery_problem": {
        "fr": ("Le colis de la commande {order} est marqué livré mais je ne l'ai jamais reçu.",
               "Le livreur a laissé mon colis {order} devant la porte et il a disparu.",
               "Ma commande {order} est arrivée endommagée, voici une photo.",
               "Le suivi de la commande {order} n'a pas bougé depuis 5 jours, colis perdu ?"),
        "en": ("The parcel for order {order} says delivered but I never got it.",
               "The courier left my parcel {order} at the door and it's gone.",
               "My order {order} arrived damaged, here is a photo.",
               "Tracking for order {order} hasn't moved in 5 days, is it lost?"),
    },
    "human_request": {
        "fr": ("Bonjour, je voudrais parler à un conseiller s'il vous plaît.",
               "Je veux parler à une vraie personne, pas à un robot.",
               "Pouvez-vous me passer un agent humain ? C'est au sujet de la commande {order}."),
        "en": ("Hi, I'd like to talk to an agent please.",
               "I want to speak to a real person, not a bot.",
               "Can you put me through to a human? It's about order {order}."),
    },
}

GREETING = {"fr": ("Bonjour", "Bonjour !", "Salut", "Bonjour ? Il y a quelqu'un ?"),
            "en": ("Hello", "Hi", "Hi there", "Good morning")}

DETAILS = {
    "fr": ("J'ai passé la commande le 3 et j'attends toujours.", "Je joins mon numéro : {phone}.",
           "C'est assez urgent, merci.", "J'ai déjà appelé hier sans résultat."),
    "en": ("I placed the order on the 3rd and I'm still waiting.", "My number is {phone}.",
           "It's quite urgent, thanks.", "I already called yesterday with no luck."),
}

FOLLOW_UP = {
    "fr": ("D'accord, et pour la commande {order} il faut faire quoi exactement ?",
           "Je vous renvoie les infos de la commande {order} par ici, c'est plus simple.",
           "Ok mais dans combien de temps ?", "Toujours rien reçu pour la commande {order}…",
           "Je viens de vérifier, c'est bien la commande {order}."),
    "en": ("OK, and what exactly do I need to do for order {order}?",
           "Sending you the details of order {order} here, it's easier.",
           "OK but how long will it take?", "Still nothing received for order {order}...",
           "Just checked, it's definitely order {order}."),
}

HANDOFF = {
    "fr": ("Ça ne répond pas à ma question, je veux parler à un conseiller.",
           "Un humain svp", "Ce n'est pas ça. Je peux avoir quelqu'un ?"),
    "en": ("That doesn't answer my question, I want to talk to an agent.",
           "Human please", "That's not it. Can I talk to someone?"),
}

THANKS = {
    "fr": ("Merci beaucoup !", "Parfait, merci.", "Super, merci pour votre aide.", "Top, bonne journée"),
    "en": ("Thanks a lot!", "Perfect, thank you.", "Great, thanks for your help.", "Cheers, have a nice day"),
}

# Said to the bot to close the conversation: phrasings the enrichment reads as thanks for sure
# (an unsure one would look like an unknown intent, and the bot would hand the thread off).
BOT_THANKS = {
    "fr": ("Merci beaucoup !", "Parfait, merci.", "Super, merci pour votre aide.", "Merci, c'est parfait !"),
    "en": ("Perfect, thank you.", "Great, thanks for your help.", "Thanks a lot!",
           "Thank you, that's all I needed."),
}

NUDGE = {  # a customer still waiting for an answer
    "fr": ("Alors, des nouvelles ?", "Je patiente toujours…", "Bonjour ? Il y a quelqu'un ?"),
    "en": ("Any news?", "Still waiting for an answer…", "Hello? Is anyone there?"),
}

TRANSFER_ASK = {  # mid-conversation, a question for another team (billing): the agent transfers
    "fr": ("Et au fait, je voudrais aussi être remboursé des frais de port de la commande {order}.",
           "Par ailleurs, la facture de la commande {order} comporte une erreur."),
    "en": ("By the way, I'd also like a refund of the shipping costs for order {order}.",
           "Also, the invoice for order {order} is wrong."),
}

UNHAPPY_AGAIN = {  # the recurring unhappy customer, back about the same order
    "fr": ("Encore moi. La commande {order} toujours bloquée, je suis furieux.",
           "C'est la troisième fois que je vous écris pour la commande {order}, toujours rien. Inadmissible !"),
    "en": ("Me again. Order {order} is still stuck, I'm furious.",
           "Still nothing for order {order}. This is unacceptable, I'm furious."),
}

REOPEN = {
    "fr": ("Re-bonjour, finalement toujours pas de nouvelles de la commande {order}.",
           "Je reviens vers vous : le problème avec la commande {order} n'est pas réglé.",
           "Désolé de vous relancer, la commande {order} n'est toujours pas arrivée."),
    "en": ("Hi again, still no news about order {order}.",
           "Coming back to you: the problem with order {order} isn't solved.",
           "Sorry to chase, order {order} still hasn't arrived."),
}

SWITCH_NOTE = {  # appended when a customer moves to another channel mid-thread
    "fr": "(je vous écrivais sur {previous} au sujet de la commande {order}) ",
    "en": "(I was writing to you on {previous} about order {order}) ",
}

SIGNATURE = {"fr": "\n\nCordialement,\n{name}\n{phone}", "en": "\n\nBest regards,\n{name}\n{phone}"}

SUBJECT = {
    "order_status": {"fr": "Suivi de commande {order}", "en": "Order {order} status"},
    "refund": {"fr": "Remboursement commande {order}", "en": "Refund for order {order}"},
    "cancellation": {"fr": "Annulation commande {order}", "en": "Cancel order {order}"},
    "complaint": {"fr": "Réclamation commande {order}", "en": "Complaint about order {order}"},
    "billing": {"fr": "Facturation commande {order}", "en": "Billing issue, order {order}"},
    "delivery_problem": {"fr": "Livraison commande {order}", "en": "Delivery problem, order {order}"},
    "human_request": {"fr": "Demande de contact", "en": "Contact request"},
    "greeting": {"fr": "Question", "en": "Question"},
}

BOT: dict[str, dict[str, tuple[str, ...]]] = {
    "greeting": {"fr": ("Bonjour ! Je suis l'assistant d'Acme. Comment puis-je vous aider ?",),
                 "en": ("Hello! I'm Acme's assistant. How can I help you?",)},
    "order_status": {
        "fr": ("Votre commande {order} est en cours de livraison, arrivée prévue demain avant 13h.",
               "La commande {order} a été expédiée hier, vous recevrez un SMS du transporteur."),
        "en": ("Your order {order} is out for delivery, expected tomorrow before 1pm.",
               "Order {order} shipped yesterday, the carrier will text you."),
    },
    "handoff": {"fr": ("Je vous mets en relation avec un conseiller, merci de patienter.",),
                "en": ("I'm connecting you with an agent, please hold on.",)},
    "other": {"fr": ("Pouvez-vous me donner votre numéro de commande ?",),
              "en": ("Could you give me your order number?",)},
}

AGENT_TRANSFER = {  # before handing the thread to the billing team
    "fr": ("Je transmets votre demande à notre service facturation, qui vous répond ici.",),
    "en": ("I'm passing your request to our billing team, they will answer you here.",),
}

AGENT_LINKED = {  # after linking or merging the customer's profiles
    "fr": ("J'ai bien retrouvé votre échange précédent au sujet de {order}, je regroupe vos dossiers.",),
    "en": ("I found your earlier conversation about {order}, I've joined your profiles.",),
}

AGENT_FIRST = {
    "fr": ("Bonjour, {agent} du service client Acme. Je regarde la commande {order} tout de suite.",
           "Bonjour, merci pour votre message. Je vérifie {order} et je reviens vers vous.",
           "Bonjour, je suis {agent}, je prends en charge votre demande."),
    "en": ("Hi, {agent} from Acme customer service. I'm looking at order {order} right now.",
           "Hello, thanks for your message. Let me check {order} and get back to you.",
           "Hi, I'm {agent}, I'll take care of your request."),
}

AGENT_NEXT = {
    "fr": ("C'est fait : le remboursement de {amount} € sera visible sous 3 à 5 jours.",
           "J'ai ouvert une enquête auprès du transporteur pour {order}.",
           "La commande {order} est bien annulée, vous recevrez une confirmation par e-mail.",
           "Je vous renvoie la facture corrigée par e-mail.",
           "Toutes mes excuses pour ce désagrément, je vous offre la livraison sur la prochaine commande."),
    "en": ("Done: the {amount} € refund will show within 3 to 5 days.",
           "I've opened an investigation with the carrier for {order}.",
           "Order {order} is cancelled, you'll get a confirmation e-mail.",
           "I'm sending you the corrected invoice by e-mail.",
           "I'm very sorry about this, free shipping on your next order is on us."),
}


class _Slots(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return ""


def fill(template: str, **slots: object) -> str:
    """``template`` with its slots filled (a slot not given becomes empty)."""
    return template.format_map(_Slots(slots))


def pick(rng: random.Random, options: tuple[str, ...], **slots: object) -> str:
    """One phrasing, chosen by ``rng``, with its slots filled."""
    return fill(rng.choice(options), **slots)
