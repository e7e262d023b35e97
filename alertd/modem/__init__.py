"""The GSM modem's AT session, below both of its users: the SMS sender (alertd.channels.gsm_modem) and the
inbox of replies and delivery reports (alertd.ingress.modem_inbox). Neither imports the other."""
