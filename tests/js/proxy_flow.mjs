// The proxy-session flow through the AWS SDK for JavaScript v3, endpoint from the environment.
import {
  ChimeSDKVoiceClient,
  CreateProxySessionCommand,
  GetProxySessionCommand,
  ListProxySessionsCommand,
  DeleteProxySessionCommand,
  NotFoundException,
  BadRequestException,
} from "@aws-sdk/client-chime-sdk-voice";

const connector = process.argv[2];
const client = new ChimeSDKVoiceClient({
  region: "us-east-1",
  credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" },
});

const created = await client.send(new CreateProxySessionCommand({
  VoiceConnectorId: connector,
  ParticipantPhoneNumbers: ["+12065550170", "+14015550171"],
  Capabilities: ["Voice", "SMS"],
  ExpiryMinutes: 15,
}));
const id = created.ProxySession.ProxySessionId;
const got = await client.send(new GetProxySessionCommand({ VoiceConnectorId: connector, ProxySessionId: id }));
const listed = await client.send(new ListProxySessionsCommand({ VoiceConnectorId: connector, MaxResults: 1 }));

let missing = "found";
try {
  await client.send(new GetProxySessionCommand({ VoiceConnectorId: connector, ProxySessionId: "missing" }));
} catch (error) {
  missing = error instanceof NotFoundException ? "NotFoundException" : `${error.name}`;
}
let badRequest = "accepted";
try {
  await client.send(new CreateProxySessionCommand({
    VoiceConnectorId: connector,
    ParticipantPhoneNumbers: ["+12065550170", "+12065550170"],
    Capabilities: ["Voice"],
  }));
} catch (error) {
  badRequest = error instanceof BadRequestException ? "BadRequestException" : `${error.name}`;
}
await client.send(new DeleteProxySessionCommand({ VoiceConnectorId: connector, ProxySessionId: id }));

console.log(JSON.stringify({
  id,
  status: got.ProxySession.Status,
  expiry: got.ProxySession.ExpiryMinutes,
  created: got.ProxySession.CreatedTimestamp.toISOString(),
  participants: got.ProxySession.Participants.map((p) => p.PhoneNumber),
  listed: listed.ProxySessions.map((s) => s.ProxySessionId),
  missing,
  badRequest,
}));
