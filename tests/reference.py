"""The sample response of the reference page (../shared/reference/GetProxySession.txt), the
model for every answer's format, byte for byte."""

SAMPLE_BODY = (
    '{"ProxySession":{"Capabilities":["SMS","Voice"],"CreatedTimestamp":"2020-04-15T16:10:10.288Z",'
    '"EndedTimestamp":null,"ExpiryMinutes":60,"GeoMatchLevel":null,"GeoMatchParams":null,'
    '"Name":null,"NumberSelectionBehavior":null,"Participants":[{"PhoneNumber":"+12065550100",'
    '"ProxyPhoneNumber":"+19135550199"},{"PhoneNumber":"+14015550101","ProxyPhoneNumber":'
    '"+19135550199"}],"ProxySessionId":"123a4bc5-67d8-901e-2f3g-h4ghjk56789l","Status":"Open",'
    '"UpdatedTimestamp":"2020-04-15T16:10:10.288Z","VoiceConnectorId":"abcdef1ghij2klmno3pqr4"}}'
)
SAMPLE_CREATED_MS = 1586967010288  # 2020-04-15T16:10:10.288Z
