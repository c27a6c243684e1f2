"""The tutorial's code as it is written (``../shared/seed/``), indentation restored: the "before".

Operation for operation what the tutorial computes (its own ``tanh`` formula, its softmax, ``np.dot``
on the column layout, float64), so the benchmarks' "the tutorial's code" row costs what that code
costs, and the tests hold ``netcore.tutorial`` to it. Only ``import numpy as np`` is added (the
page imports it off-screen); the tutorial's own comments are kept, its prose is not copied.
"""

import numpy as np


def initialize_parameters(n_in, n_outs):
    """
    Three Layer Neural Network (Hard Coded)
    """
    np.random.seed(2)
    # Layer 1 parameters
    W1 = np.random.randn(n_outs[0], n_in) * 0.1
    b1 = np.zeros((n_outs[0], 1))
    # Layer 2
    W2 = np.random.randn(n_outs[1], n_outs[0]) * 0.1
    b2 = np.zeros((n_outs[1], 1))
    # Layer 3
    W3 = np.random.randn(n_outs[2], n_outs[1]) * 0.1
    b3 = np.zeros((n_outs[2], 1))
    parameters = {
        'W1': W1,
        'b1': b1,
        'W2': W2,
        'b2': b2,
        'W3': W3,
        'b3': b3
    }
    return parameters


def tanh(x):
    return (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))


def softmax(x):
    # remove largest value
    expx = np.exp(x - np.max(x))
    return expx / expx.sum(axis=0, keepdims=True)


def forward_propagation(X, parameters):
    """
    Forward propagates through the network to get the resulting output node
    """
    # Getting parameters
    W1 = parameters['W1']
    W2 = parameters['W2']
    W3 = parameters['W3']
    b1 = parameters['b1']
    b2 = parameters['b2']
    b3 = parameters['b3']
    Z1 = np.dot(W1, X) + b1
    A1 = tanh(Z1)
    Z2 = np.dot(W2, A1) + b2
    A2 = tanh(Z2)
    Z3 = np.dot(W3, A2) + b3
    A3 = softmax(Z3)
    cache = {
        'Z1': Z1,
        'A1': A1,
        'Z2': Z2,
        'A2': A2,
        'Z3': Z3,
        'A3': A3
    }
    return A3, cache


def backward_propagation(X, y, cache, parameters):
    """
    Backpropagates through network and gets the gradients for each parameter to perform gradient descent on
    """
    m = X.shape[1]
    # Getting our parameters
    W1 = parameters['W1']
    W2 = parameters['W2']
    W3 = parameters['W3']
    b1 = parameters['b1']
    b2 = parameters['b2']
    b3 = parameters['b3']
    # Getting our results in each layer
    Z1 = cache['Z1']
    Z2 = cache['Z2']
    Z3 = cache['Z3']
    A1 = cache['A1']
    A2 = cache['A2']
    A3 = cache['A3']
    dZ3 = A3 - y
    dW3 = 1 / m * np.dot(dZ3, A2.T)
    db3 = 1 / m * np.sum(dZ3,axis=1,keepdims=True)
    dZ2 = np.dot(W3.T,dZ3) * (1 - np.power(A2,2))
    dW2 = 1 / m * np.dot(dZ2, A1.T)
    db2 = 1 / m * np.sum(dZ2, axis=1, keepdims=True)
    dZ1 = np.dot(W2.T, dZ2) * (1 - np.power(A1,2))
    dW1 = 1 / m * np.dot(dZ1, X.T)
    db1 = 1 / m * np.sum(dZ1, axis=1, keepdims=True)
    grad = {
        'dW1': dW1,
        'db1': db1,
        'dW2': dW2,
        'db2': db2,
        'dW3': dW3,
        'db3': db3,
    }
    return grad


def update_parameters(parameters, grads, learning_rate=0.001):
    # Getting our parameters
    W1 = parameters['W1']
    W2 = parameters['W2']
    W3 = parameters['W3']
    b1 = parameters['b1']
    b2 = parameters['b2']
    b3 = parameters['b3']
    # Getting gradients
    dW1 = grads['dW1']
    db1 = grads['db1']
    dW2 = grads['dW2']
    db2 = grads['db2']
    dW3 = grads['dW3']
    db3 = grads['db3']
    W1 = W1 - dW1 * learning_rate
    b1 = b1 - db1 * learning_rate
    W2 = W2 - dW2 * learning_rate
    b2 = b2 - db2 * learning_rate
    W3 = W3 - dW3 * learning_rate
    b3 = b3 - db3 * learning_rate
    parameters = {
        'W1': W1,
        'b1': b1,
        'W2': W2,
        'b2': b2,
        'W3': W3,
        'b3': b3
    }
    return parameters


def model(X, y, learning_rate, num_iterations = 150, print_cost=True):
    # Initialize parameters
    parameters = initialize_parameters(784, [16, 16, 10])
    W1 = parameters['W1']
    W2 = parameters['W2']
    W3 = parameters['W3']
    b1 = parameters['b1']
    b2 = parameters['b2']
    b3 = parameters['b3']
    # Loop (gradient descent)
    for i in range(0, num_iterations):
        if i > 75:
            learning_rate = 0.1
        A3, cache = forward_propagation(X, parameters)
        cost = -np.mean(y * np.log(A3 + 1e-8))
        y_hat = np.argmax(A3, axis=0)
        Y = np.argmax(y, axis=0)
        accuracy = (y_hat == Y).mean()
        grads = backward_propagation(X, y, cache, parameters)
        parameters = update_parameters(parameters, grads, learning_rate)
        if print_cost and i % 10 == 0:
            print ("Cost after iteration %i: %f Accuracy: %f" %(i, cost, accuracy * 100))
    return parameters


def one_hot(a, num_classes):
    return np.squeeze(np.eye(num_classes)[a.reshape(-1)])
