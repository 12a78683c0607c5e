// The room page: one WebSocket to the room; messages typed here go to everyone in it.
const roomName = JSON.parse(document.getElementById('room-name').textContent);
const scheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
const chatSocket = new WebSocket(scheme + window.location.host + '/ws/chat/' + roomName + '/');

chatSocket.onmessage = function(e) {
    const data = JSON.parse(e.data);
    const line = data.left ? '(someone left the room)' : data.message;
    document.querySelector('#chat-log').value += (line + '\n');
};

chatSocket.onopen = function() {
    document.body.dataset.connected = 'true';
};

chatSocket.onclose = function() {
    document.body.dataset.connected = 'false';
    console.error('Chat socket closed unexpectedly');
};

document.querySelector('#chat-message-input').focus();
document.querySelector('#chat-message-input').onkeyup = function(e) {
    if (e.key === 'Enter') {
        document.querySelector('#chat-message-submit').click();
    }
};

document.querySelector('#chat-message-submit').onclick = function(e) {
    const messageInputDom = document.querySelector('#chat-message-input');
    chatSocket.send(JSON.stringify({'message': messageInputDom.value}));
    messageInputDom.value = '';
};
