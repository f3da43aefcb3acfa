// An AWS Lambda style handler: `event` is the function URL / HTTP API payload format 2.0, and the
// result a {statusCode, headers, body} object, as on Lambda.
export const handler = async (event, context) => {
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      message: 'Hello from a Lambda-style handler on fnctl',
      path: event.rawPath,
      query: event.queryStringParameters ?? {},
      method: event.requestContext.http.method,
      requestId: context?.awsRequestId,
    }),
  };
};
