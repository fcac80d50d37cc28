"""The numeric replies the gateway sends, under their standard names.

Names and texts follow RFC 1459/2812, the modern IRC client protocol document
(modern.ircdocs.horse) and IRCv3 (MONITOR, SASL). Clients match on the code, so
the texts are for people; ``DEFAULT_TEXT`` gives the usual one for each numeric
whose last parameter is a fixed sentence, so that callers do not repeat it.
"""
from __future__ import annotations

from typing import Dict, Optional

RPL_WELCOME = "001"
RPL_YOURHOST = "002"
RPL_CREATED = "003"
RPL_MYINFO = "004"
RPL_ISUPPORT = "005"
RPL_UMODEIS = "221"
RPL_AWAY = "301"
RPL_ISON = "303"
RPL_WHOISUSER = "311"
RPL_WHOISSERVER = "312"
RPL_ENDOFWHO = "315"
RPL_ENDOFWHOIS = "318"
RPL_WHOISCHANNELS = "319"
RPL_LISTSTART = "321"
RPL_LIST = "322"
RPL_LISTEND = "323"
RPL_CHANNELMODEIS = "324"
RPL_CREATIONTIME = "329"
RPL_NOTOPIC = "331"
RPL_TOPIC = "332"
RPL_TOPICWHOTIME = "333"
RPL_INVITING = "341"
RPL_WHOREPLY = "352"
RPL_NAMREPLY = "353"
RPL_ENDOFNAMES = "366"
RPL_MOTD = "372"
RPL_MOTDSTART = "375"
RPL_ENDOFMOTD = "376"
ERR_NOSUCHNICK = "401"
ERR_NOSUCHCHANNEL = "403"
ERR_CANNOTSENDTOCHAN = "404"
ERR_TOOMANYCHANNELS = "405"
ERR_INVALIDCAPCMD = "410"
ERR_NORECIPIENT = "411"
ERR_NOTEXTTOSEND = "412"
ERR_INPUTTOOLONG = "417"
ERR_UNKNOWNCOMMAND = "421"
ERR_NOMOTD = "422"
ERR_NONICKNAMEGIVEN = "431"
ERR_ERRONEUSNICKNAME = "432"
ERR_NICKNAMEINUSE = "433"
ERR_NICKCOLLISION = "436"
ERR_USERNOTINCHANNEL = "441"
ERR_NOTONCHANNEL = "442"
ERR_USERONCHANNEL = "443"
ERR_NOTREGISTERED = "451"
ERR_NEEDMOREPARAMS = "461"
ERR_ALREADYREGISTERED = "462"
ERR_PASSWDMISMATCH = "464"
ERR_CHANNELISFULL = "471"
ERR_INVITEONLYCHAN = "473"
ERR_BANNEDFROMCHAN = "474"
ERR_BADCHANNELKEY = "475"
ERR_CHANOPRIVSNEEDED = "482"
ERR_USERSDONTMATCH = "502"
RPL_MONONLINE = "730"
RPL_MONOFFLINE = "731"
RPL_MONLIST = "732"
RPL_ENDOFMONLIST = "733"
ERR_MONLISTFULL = "734"
RPL_LOGGEDIN = "900"
RPL_LOGGEDOUT = "901"
ERR_NICKLOCKED = "902"
RPL_SASLSUCCESS = "903"
ERR_SASLFAIL = "904"
ERR_SASLTOOLONG = "905"
ERR_SASLABORTED = "906"
ERR_SASLALREADY = "907"
RPL_SASLMECHS = "908"

#: code -> standard name ("001" -> "RPL_WELCOME"), for logs and tests.
NAMES: Dict[str, str] = {
    value: name for name, value in dict(globals()).items()
    if name.startswith(("RPL_", "ERR_")) and isinstance(value, str)
}

#: The usual closing sentence of a numeric, appended when the caller gives none.
DEFAULT_TEXT: Dict[str, str] = {
    RPL_ISUPPORT: "are supported by this server",
    RPL_ENDOFWHO: "End of /WHO list",
    RPL_ENDOFWHOIS: "End of /WHOIS list",
    RPL_LISTEND: "End of /LIST",
    RPL_NOTOPIC: "No topic is set",
    RPL_ENDOFNAMES: "End of /NAMES list",
    RPL_ENDOFMOTD: "End of /MOTD command",
    ERR_NOSUCHNICK: "No such nick/channel",
    ERR_NOSUCHCHANNEL: "No such channel",
    ERR_CANNOTSENDTOCHAN: "Cannot send to channel",
    ERR_TOOMANYCHANNELS: "You have joined too many channels",
    ERR_INVALIDCAPCMD: "Invalid CAP command",
    ERR_NORECIPIENT: "No recipient given",
    ERR_NOTEXTTOSEND: "No text to send",
    ERR_INPUTTOOLONG: "Input line was too long",
    ERR_UNKNOWNCOMMAND: "Unknown command",
    ERR_NOMOTD: "MOTD File is missing",
    ERR_NONICKNAMEGIVEN: "No nickname given",
    ERR_ERRONEUSNICKNAME: "Erroneous nickname",
    ERR_NICKNAMEINUSE: "Nickname is already in use",
    ERR_NICKCOLLISION: "Nickname collision",
    ERR_USERNOTINCHANNEL: "They aren't on that channel",
    ERR_NOTONCHANNEL: "You're not on that channel",
    ERR_USERONCHANNEL: "is already on channel",
    ERR_NOTREGISTERED: "You have not registered",
    ERR_NEEDMOREPARAMS: "Not enough parameters",
    ERR_ALREADYREGISTERED: "You may not reregister",
    ERR_PASSWDMISMATCH: "Password incorrect",
    ERR_CHANNELISFULL: "Cannot join channel (+l)",
    ERR_INVITEONLYCHAN: "Cannot join channel (+i)",
    ERR_BANNEDFROMCHAN: "Cannot join channel (+b)",
    ERR_BADCHANNELKEY: "Cannot join channel (+k)",
    ERR_CHANOPRIVSNEEDED: "You're not channel operator",
    ERR_USERSDONTMATCH: "Can't change mode for other users",
    RPL_ENDOFMONLIST: "End of MONITOR list",
    ERR_MONLISTFULL: "Monitor list is full",
    RPL_LOGGEDOUT: "You are now logged out",
    ERR_NICKLOCKED: "You must use a nick assigned to you",
    RPL_SASLSUCCESS: "SASL authentication successful",
    ERR_SASLFAIL: "SASL authentication failed",
    ERR_SASLTOOLONG: "SASL message too long",
    ERR_SASLABORTED: "SASL authentication aborted",
    ERR_SASLALREADY: "You have already authenticated using SASL",
    RPL_SASLMECHS: "are available SASL mechanisms",
}


def name_of(code: str) -> Optional[str]:
    """The standard name of a numeric, or None for one this table does not know."""
    return NAMES.get(code)
