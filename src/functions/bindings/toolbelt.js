// Parley's `lp-faas-toolbelt` (spec 4.10). Evaluated once per context as
// `(function (natives) {...})`; returns the module's exports. I/O goes through natives.call,
// which runs on the engine's host/HTTP threads and resolves back on the function's worker.
(function (natives) {
  'use strict';
  const JSONparse = JSON.parse;
  const JSONstringify = JSON.stringify;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const encode = encodeURIComponent;

  function call(op, args) {
    return natives.call(op, JSONstringify(args)).then((text) => JSONparse(text));
  }

  const ErrorCodes = Object.freeze({
    NoSaToken: 'com.liveperson.faas.handler.no-sa-token',
    Secret: Object.freeze({
      InvalidFormat: 'com.liveperson.faas.secret.invalid-format',
      OperationFailed: 'com.liveperson.faas.secret.op-failed',
      NotFound: 'com.liveperson.faas.secret.not-found',
      AuthFailed: 'com.liveperson.faas.secret.auth-failed',
    }),
    Csds: Object.freeze({
      DomainNotFound: 'com.liveperson.faas.csds.domain.not-found',
      OperationFailed: 'com.liveperson.faas.csds.op-failed',
    }),
  });

  class SecretError extends ErrorCtor {
    constructor(code, message) {
      super(message);
      this.name = 'SecretError';
      this.code = code;
    }
  }

  // ---- HTTPClient (request-promise style) ----
  function encodeQs(qs) {
    const parts = [];
    for (const k of Object.keys(qs)) {
      const v = qs[k];
      if (v === undefined) continue;
      if (Array.isArray(v)) {
        for (const x of v) parts.push(encode(k) + '=' + encode(String(x)));
      } else {
        parts.push(encode(k) + '=' + encode(v === null ? '' : String(v)));
      }
    }
    return parts.join('&');
  }
  function hasHeader(headers, name) {
    const lower = name.toLowerCase();
    return Object.keys(headers).some((k) => k.toLowerCase() === lower);
  }
  class StatusCodeError extends ErrorCtor {
    constructor(statusCode, body, options, response) {
      super(statusCode + ' - ' + (typeof body === 'string' ? JSONstringify(body) : safeJson(body)));
      this.name = 'StatusCodeError';
      this.statusCode = statusCode;
      this.error = body;
      this.options = options;
      this.response = response;
    }
  }
  class RequestError extends ErrorCtor {
    constructor(message, options) {
      super(message);
      this.name = 'RequestError';
      this.cause = message;
      this.error = message;
      this.options = options;
    }
  }
  function safeJson(v) {
    try {
      return JSONstringify(v);
    } catch (e) {
      return String(v);
    }
  }
  function buildRequest(o) {
    let url = o.uri !== undefined ? o.uri : o.url;
    if (url && typeof url === 'object' && typeof url.href === 'string') url = url.href;
    if (typeof url !== 'string' || url === '') {
      throw new RequestError('Error: options.uri is a required argument', o);
    }
    if (o.baseUrl) url = String(o.baseUrl).replace(/\/$/, '') + '/' + url.replace(/^\//, '');
    if (o.qs && typeof o.qs === 'object') {
      const q = encodeQs(o.qs);
      if (q) url += (url.indexOf('?') >= 0 ? '&' : '?') + q;
    }
    const method = String(o.method || 'GET').toUpperCase();
    const headers = Object.assign({}, o.headers || {});
    let body = o.body;
    if (o.form !== undefined) {
      body = typeof o.form === 'string' ? o.form : encodeQs(o.form);
      if (!hasHeader(headers, 'content-type')) headers['content-type'] = 'application/x-www-form-urlencoded';
    } else if (o.json && body !== undefined && typeof body !== 'string') {
      body = JSONstringify(body);
      if (!hasHeader(headers, 'content-type')) headers['content-type'] = 'application/json';
    } else if (o.json && typeof o.json === 'object' && body === undefined) {
      body = JSONstringify(o.json);
      if (!hasHeader(headers, 'content-type')) headers['content-type'] = 'application/json';
    }
    if (o.json && !hasHeader(headers, 'accept')) headers.accept = 'application/json';
    if (body !== undefined && typeof body !== 'string') body = String(body);
    const list = [];
    for (const k of Object.keys(headers)) list.push([k, String(headers[k])]);
    return {method, url, headers: list, body: body === undefined ? '' : body,
            timeout: typeof o.timeout === 'number' ? o.timeout : 0};
  }
  // The URL a Location header points to, relative to the URL that answered (RFC 3986 5.2, for
  // the forms servers send): absolute (any scheme: the engine refuses all but http/https),
  // scheme-relative "//host/path", absolute-path "/path", or relative "path" and "?query".
  function resolveLocation(base, location) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(location)) return location;
    const m = /^([a-z][a-z0-9+.-]*:)(\/\/[^/?#]*)?([^?#]*)/i.exec(base);
    if (!m) return location;
    const scheme = m[1];
    const authority = m[2] || '';
    const path = m[3] || '/';
    if (location.startsWith('//')) return scheme + location;
    if (location.startsWith('/')) return scheme + authority + location;
    if (location.startsWith('?')) return scheme + authority + path + location;
    return scheme + authority + path.slice(0, path.lastIndexOf('/') + 1) + location;
  }
  function send(o, req, redirects) {
    return call('http', req).then((r) => {
      if (!r.ok) throw new RequestError('Error: ' + r.message, o);
      const res = r.value;
      const location = res.headers.location;
      const follow = o.followRedirect !== false && (req.method === 'GET' || req.method === 'HEAD' ||
                                                    o.followAllRedirects);
      if (res.statusCode >= 300 && res.statusCode < 400 && location && follow) {
        if (redirects >= 10) throw new RequestError('Error: too many redirects', o);
        const next = resolveLocation(req.url, location);
        const method = res.statusCode === 307 || res.statusCode === 308 ? req.method : 'GET';
        return send(o, Object.assign({}, req, {url: next, method, body: method === req.method ? req.body : ''}),
                    redirects + 1);
      }
      let body = res.body;
      if (o.json && typeof body === 'string' && body.length) {
        try {
          body = JSONparse(body);
        } catch (e) {
          // request-promise keeps the text when it is not JSON.
        }
      }
      const full = {statusCode: res.statusCode, headers: res.headers, body, request: {uri: req.url, method: req.method}};
      const simple = o.simple !== false;
      if (simple && !(res.statusCode >= 200 && res.statusCode < 300)) {
        throw new StatusCodeError(res.statusCode, body, o, full);
      }
      return o.resolveWithFullResponse ? full : body;
    });
  }
  function HTTPClient() {
    return function request(uriOrOptions, maybeOptions) {
      let o;
      if (typeof uriOrOptions === 'string') {
        o = Object.assign({}, maybeOptions || {}, {uri: uriOrOptions});
      } else {
        o = Object.assign({}, uriOrOptions || {}, maybeOptions || {});
      }
      let req;
      try {
        req = buildRequest(o);
      } catch (e) {
        return Promise.reject(e);
      }
      return send(o, req, 0);
    };
  }

  // ---- SecretClient ----
  function secretError(r) {
    const code = r.code === 'NOT_FOUND' ? ErrorCodes.Secret.NotFound
               : r.code === 'INVALID' ? ErrorCodes.Secret.InvalidFormat
               : r.code === 'UNAUTHORIZED' || r.code === 'FORBIDDEN' ? ErrorCodes.Secret.AuthFailed
               : ErrorCodes.Secret.OperationFailed;
    return new SecretError(code, r.message);
  }
  function SecretClient() {
    return {
      readSecret(key) {
        if (typeof key !== 'string' || key === '') {
          return Promise.reject(new SecretError(ErrorCodes.Secret.InvalidFormat, 'secret key must be a non-empty string'));
        }
        return call('secret.read', {key}).then((r) => {
          if (!r.ok) throw secretError(r);
          return {key, value: r.value};
        });
      },
      updateSecret(secret) {
        if (!secret || typeof secret.key !== 'string' || secret.key === '' || secret.value === undefined) {
          return Promise.reject(new SecretError(ErrorCodes.Secret.InvalidFormat, 'updateSecret expects {key, value}'));
        }
        const value = typeof secret.value === 'string' ? secret.value : JSONstringify(secret.value);
        return call('secret.update', {key: secret.key, value}).then((r) => {
          if (!r.ok) throw secretError(r);
          return {key: secret.key, value};
        });
      },
    };
  }

  // ---- ContextServiceClient ----
  class ContextServiceError extends ErrorCtor {
    constructor(code, message) {
      super(message);
      this.name = 'ContextServiceError';
      this.code = code;
    }
  }
  function ContextServiceClient(config) {
    if (!config || typeof config !== 'object') throw new ErrorCtor('ContextServiceClient requires a config {apiKey, accountId}');
    if (!config.apiKey) throw new ErrorCtor('ContextServiceClient config is missing "apiKey"');
    if (!config.accountId) throw new ErrorCtor('ContextServiceClient config is missing "accountId"');
    function op(name, args) {
      return call('context', {op: name, args}).then((r) => {
        if (!r.ok) throw new ContextServiceError(r.code, r.message);
        return r.value === null ? undefined : r.value;
      });
    }
    function withSession(args, sessionId) {
      if (sessionId !== undefined && sessionId !== null) args.sessionId = String(sessionId);
      return args;
    }
    return {
      createNamespace: (ns, options) => op('createNamespace', Object.assign({namespace: ns}, options && options.ttl !== undefined ? {ttl: options.ttl} : {})),
      deleteNamespace: (ns) => op('deleteNamespace', {namespace: ns}),
      getListOfNamespaces: () => op('getListOfNamespaces', {}).then((v) => v || []),
      setPropertiesInNamespace: (ns, properties, sessionId) => op('set', withSession({namespace: ns, properties}, sessionId)),
      updatePropertiesInNamespace: (ns, properties, sessionId) => op('update', withSession({namespace: ns, properties}, sessionId)),
      getAllPropertiesInSession: (ns, sessionId) => op('getAll', withSession({namespace: ns}, sessionId)).then((v) => v || {}),
      getSelectedPropertiesInSession: (ns, names, sessionId) => op('getSelected', withSession({namespace: ns, names}, sessionId)).then((v) => v || {}),
      getPropertyInSession: (ns, name, sessionId) => op('get', withSession({namespace: ns, name}, sessionId)),
      deletePropertyInSession: (ns, name, sessionId) => op('deleteProperty', withSession({namespace: ns, name}, sessionId)),
      deleteSession: (ns, sessionId) => op('deleteSession', withSession({namespace: ns}, sessionId)),
      getListOfSessions: (ns) => op('getListOfSessions', {namespace: ns}).then((v) => v || []),
    };
  }

  // ---- ConversationUtil ----
  function scanConversationForKeywords(conversation, keywords) {
    const out = [];
    const records = (conversation && conversation.messageRecords) || [];
    const list = Array.isArray(keywords) ? keywords : [];
    for (const rec of records) {
      const msg = rec && rec.messageData && rec.messageData.msg;
      const text = msg && typeof msg.text === 'string' ? msg.text : null;
      if (text === null) continue;
      const lower = text.toLowerCase();
      for (const kw of list) {
        if (lower.indexOf(String(kw).toLowerCase()) >= 0) {
          out.push({message: text, sentTimestamp: rec.timeL, sentBy: rec.sentBy, tag: 'keywordRef:' + kw});
        }
      }
    }
    return out;
  }
  function ConversationUtil() {
    return {
      // Only the sections named in contentToRetrieve (ConversationContentTypes values) are
      // returned, as the Messaging Interactions API does; none named: every section.
      getConversationById(convId, contentToRetrieve) {
        const wanted = contentToRetrieve === undefined || contentToRetrieve === null ? [] : contentToRetrieve;
        if (!Array.isArray(wanted)) {
          return Promise.reject(new TypeErrorCtor('contentToRetrieve must be an array of ConversationContentTypes'));
        }
        const known = Object.values(ConversationContentTypes);
        for (const c of wanted) {
          if (!known.includes(c)) {
            return Promise.reject(new ErrorCtor(`unknown content type '${String(c)}' in contentToRetrieve; ` +
                                                'use the values of ConversationContentTypes'));
          }
        }
        return call('conversation', {conversationId: String(convId), contentToRetrieve: wanted}).then((r) => {
          if (!r.ok) throw new ErrorCtor(r.message);
          const conv = r.value;
          if (!wanted.length || !conv || typeof conv !== 'object') return conv;
          const out = {};
          for (const c of wanted) if (Object.prototype.hasOwnProperty.call(conv, c)) out[c] = conv[c];
          return out;
        });
      },
      scanConversationForKeywords,
    };
  }

  // ---- LpClient: Parley's own REST API by LivePerson service name (functions/lp_services.h)
  function LpClient() {
    return function lpClient(service, path, options) {
      const o = options || {};
      if (typeof path !== 'string' || path === '') {
        return Promise.reject(new TypeErrorCtor('LpClient: path must be a non-empty string like ' +
                                            '/api/v1/accounts/<process.env.BRAND_ID>/skills'));
      }
      let body = o.body;
      if (body !== undefined && body !== null && typeof body !== 'string') body = JSONstringify(body);
      const args = {service: String(service), method: String(o.method || 'GET').toUpperCase(), path,
                    body: body === undefined || body === null ? '' : body};
      if (o.appKeySecretName !== undefined) args.appKeySecretName = String(o.appKeySecretName);
      return call('platform', {op: 'lp', args}).then((r) => {
        if (!r.ok) {
          const e = new ErrorCtor(r.message);
          e.code = r.code;
          throw e;
        }
        const res = r.value;
        let parsed = res.body;
        if (o.json !== false && typeof parsed === 'string' && parsed.length) {
          try {
            parsed = JSONparse(parsed);
          } catch (e) {
            // Not JSON: kept as text.
          }
        }
        const full = {statusCode: res.statusCode, headers: res.headers, body: parsed};
        if (!(res.statusCode >= 200 && res.statusCode < 300)) throw new StatusCodeError(res.statusCode, parsed, o, full);
        return parsed;
      });
    };
  }

  // ---- SDEUtil
  function sortedEvents(conversation, section) {
    const holder = conversation && conversation[section];
    const events = holder && Array.isArray(holder.events) ? holder.events.slice() : [];
    const ts = (e) => {
      const n = Number(e && e.serverTimeStamp);
      return Number.isFinite(n) ? n : 0;
    };
    events.sort((a, b) => ts(a) - ts(b));  // stable: equal timestamps keep their order
    return {events};
  }
  function SDEUtil() {
    return {
      // The conversation's authenticated and unauthenticated engagement attributes (the
      // Messaging Interactions API's sdes / unAuthSdes), events oldest first.
      getSDEsFromConv(conversation) {
        if (!conversation || typeof conversation !== 'object') {
          throw new TypeErrorCtor('getSDEsFromConv expects a conversation (from ConversationUtil.getConversationById)');
        }
        return {sdes: sortedEvents(conversation, 'sdes'), unAuthSdes: sortedEvents(conversation, 'unAuthSdes')};
      },
      // Reports engagement attributes for a conversation of this function's account
      // (LivePerson's Engagement Attributes API). In Parley the session is the conversation:
      // sessionId is the conversation id (the bot input's convId), visitorId its consumer id or
      // the visitor id the consumer's conversationContext carried. They then show in
      // ConversationUtil.getConversationById(id, ['sdes']) and in the REST conversation.
      addSDEs(sdes, visitorId, sessionId) {
        if (!Array.isArray(sdes)) {
          return Promise.reject(new TypeErrorCtor("addSDEs expects an array of SDEs, e.g. [{type: SDETypes.PERSONAL_INFO, personal: {...}}]"));
        }
        if (typeof visitorId !== 'string' || visitorId === '') {
          return Promise.reject(new TypeErrorCtor('addSDEs expects visitorId as a non-empty string (the consumer id of the conversation)'));
        }
        if (typeof sessionId !== 'string' || sessionId === '') {
          return Promise.reject(new TypeErrorCtor('addSDEs expects sessionId as a non-empty string (the conversation id)'));
        }
        return call('platform', {op: 'sdes.add', args: {sdes, visitorId, sessionId}}).then((r) => {
          if (!r.ok) {
            const e = new ErrorCtor(r.message);
            e.code = r.code;
            throw e;
          }
          return undefined;
        });
      },
    };
  }

  // ---- GDPRUtil
  // The hosted files a conversation (from ConversationUtil.getConversationById) refers to: the
  // relativePath of its HOSTED_FILE message records.
  function conversationFiles(conversation) {
    const records = Array.isArray(conversation.messageRecords) ? conversation.messageRecords : [];
    const out = [];
    for (const rec of records) {
      const file = rec && rec.type === 'HOSTED_FILE' && rec.messageData && rec.messageData.file;
      if (file && typeof file.relativePath === 'string' && !out.includes(file.relativePath)) out.push(file.relativePath);
    }
    return out;
  }
  function GDPRUtil() {
    return {
      // Checks the credentials (a user of this account with the ADMIN role), then replaces the
      // conversation's files that shouldReplace selects and resolves with their paths
      // (FilesReplaced). Parley keeps no file storage: a conversation with files selected is
      // refused with an error that says so; one without resolves with [].
      replaceConversationFiles(conversation, credentials, shouldReplace, replacementFile) {
        if (!conversation || typeof conversation !== 'object' || !conversation.info ||
            typeof conversation.info.conversationId !== 'string') {
          return Promise.reject(new TypeErrorCtor('replaceConversationFiles expects a conversation (from ConversationUtil.getConversationById, with info)'));
        }
        if (!credentials || typeof credentials.username !== 'string' || typeof credentials.password !== 'string' ||
            credentials.username === '' || credentials.password === '') {
          return Promise.reject(new TypeErrorCtor('replaceConversationFiles expects credentials {username, password}'));
        }
        const select = shouldReplace === undefined || shouldReplace === null ? () => true : shouldReplace;
        if (typeof select !== 'function') {
          return Promise.reject(new TypeErrorCtor('replaceConversationFiles: shouldReplace must be a function (filePath) => boolean'));
        }
        if (replacementFile !== undefined && replacementFile !== null &&
            (typeof replacementFile !== 'object' || !(replacementFile.body instanceof Uint8Array) ||
             typeof replacementFile.contentType !== 'string')) {
          return Promise.reject(new TypeErrorCtor('replaceConversationFiles: replacementFile must be {body: Buffer, contentType: string}'));
        }
        let paths;
        try {
          paths = conversationFiles(conversation).filter((p) => select(p) === true);
        } catch (e) {
          return Promise.reject(e);
        }
        return call('platform', {op: 'gdpr.replaceFiles', args: {
          conversationId: conversation.info.conversationId,
          username: credentials.username, password: credentials.password, paths,
        }}).then((r) => {
          if (!r.ok) {
            const e = new ErrorCtor(r.message);
            e.code = r.code;
            throw e;
          }
          return r.value;
        });
      },
    };
  }

  function notAvailable(name, why) {
    return function () {
      throw new ErrorCtor(`Toolbelt.${name} is not available in Parley functions: ${why}`);
    };
  }

  const ConversationContentTypes = Object.freeze({
    INFO: 'info', SDES: 'sdes', UNAUTH_SDES: 'unAuthSdes', CAMPAIGN: 'campaign',
    MESSAGE_RECORDS: 'messageRecords', AGENT_PARTICIPANTS: 'agentParticipants',
    AGENT_PARTICIPANTS_ACTIVE: 'agentParticipantsActive', CONSUMER_PARTICIPANTS: 'consumerParticipants',
    TRANSFERS: 'transfers', INTERACTIONS: 'interactions', MESSAGE_SCORES: 'messageScores',
    MESSAGE_STATUSES: 'messageStatuses', SKILL_CHANGES: 'skillChanges',
    CONVERSATION_SURVEYS: 'conversationSurveys', AGENT_PARTICIPANTS_LEAVE: 'agentParticipantsLeave',
    COBROWSE_SESSIONS: 'coBrowseSessions', SUMMARY: 'summary', MONITORING: 'monitoring', DIALOGS: 'dialogs',
    RESPONSE_TIME: 'responseTime', INTENTS: 'intents', UNIQUE_INTENTS: 'uniqueIntents',
    LATEST_AGENT_SURVEY: 'latestAgentSurvey', PREVIOUSLY_SUBMITTED_AGENT_SURVEYS: 'previouslySubmittedAgentSurveys',
  });
  const SDETypes = Object.freeze({
    CART: 'cart', PURCHASE: 'purchase', VIEWED_PRODUCT: 'prodView', CUSTOMER_INFO: 'ctmrinfo',
    MARKETING_SOURCE: 'mrktInfo', PERSONAL_INFO: 'personal', LEAD: 'lead', SERVICE_ACTIVITY: 'service',
    VISITOR_ERROR: 'error', SEARCH_CONTENT: 'searchInfo',
  });
  const LpServices = Object.freeze({
    MESSAGING_HISTORY: 'msgHist', AGENT_VEP: 'agentVep', ACCOUNT_CONFIG_READ_ONLY: 'accountConfigReadOnly',
    ACCOUNT_CONFIG_READ_WRITE: 'accountConfigReadWrite', ASYNC_MESSAGING: 'asyncMessaging',
    ASYNC_MESSAGING_ENT: 'asyncMessagingEnt', ENG_HIST_DOMAIN: 'engHistDomain', RTBF: 'rtbf',
    AUDITLOG: 'auditlog', SMT: 'smt', PUSHER: 'pusher', LE_DATA_REPORTING: 'leDataReporting',
    MSG_EWT_API: 'msgEwtAPI', MSDKGW: 'msdkgw',
  });

  const Toolbelt = Object.freeze({
    HTTPClient,
    SecretClient,
    ContextServiceClient,
    ConversationUtil,
    LpClient,
    SDEUtil,
    GDPRUtil,
    MTLSClient: notAvailable('MTLSClient', 'outbound HTTP leaves from the server, which has no ' +
                                           'client certificates of a function; use HTTPClient'),
    OrchestratorClient: notAvailable('OrchestratorClient', 'invoking other functions from a function ' +
                                                           'is not built; call the functions gateway ' +
                                                           'from the caller instead'),
    SFClient: notAvailable('SFClient', 'it needs jsforce, which makes its own network connections; ' +
                                       'call the Salesforce REST API with HTTPClient'),
  });
  return {Toolbelt, ErrorCodes, SecretError, ConversationContentTypes, SDETypes, LpServices};
})
